"""The committed full run (bench/results/reliability.json) holds the issue's named keys and meets each
acceptance figure; the data card quotes those numbers."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_reliability_run_meets_every_acceptance_figure() -> None:
    d = json.loads((ROOT / "bench" / "results" / "reliability.json").read_text())
    assert d["mia_auc"]["dp"] <= 0.55 and d["mia_auc"]["dp"] < d["mia_auc"]["no_dp"]
    assert set(d["mia_auc_by_epsilon"]) >= {"1", "8"} and d["mia_tpr_at_1pct_fpr"]
    assert d["phi_leaks"] == 0 and d["phi_strings_checked"] >= 10_000
    assert d["poison_auroc_drop"]["robust"] <= 0.02 and "fedavg" in d["poison_auroc_drop"]
    assert d["fuzz"]["cases"] >= 5_000 and d["fuzz"]["crashes"] == 0 and d["fuzz"]["hangs"] == 0
    assert d["service"]["lost"] == 0 and d["service"]["duplicated"] == 0 and d["service"]["studies"] > 0
    assert d["deid_recall_unseen_names"]["ours"] >= 0.97 and "baseline" in d["deid_recall_unseen_names"]
    card = (ROOT / "data_cards" / "federated_privacy.md").read_text()
    assert f"{d['mia_auc']['dp']:.3f}" in card and f"{d['poison_auroc_drop']['robust']:.3f}" in card
    assert f"{d['fuzz']['cases']:,}" in card and f"{d['phi_strings_checked']:,}" in card
