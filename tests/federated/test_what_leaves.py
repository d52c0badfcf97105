"""What leaves a node in a DP federation, captured by a Flower mod; calibration fitted at each node on its own records.

One real 3-node Flower simulation of the tiny cohort under DP (head-only DP-SGD over a frozen reader, secure
randomness). A client mod records every reply every node sends. Each recorded key must be in the data card's
table (``data_cards/federated_privacy.md``, read here as a reviewer reads it), each charged key must have its
ledger entry, and nothing per-case (a case id, a label, a logit, an array other than the exchanged weights) may
be there. Then the RUN's calibrators: every site's own, none pooled, and unmoved when another site's labels change.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from federated.config import FedConfig
from federated.egress import DP_EGRESS, capture_mod, read_capture
from federated.ledger import PrivacyLedger
from workbench.runtime.run import site_dirs_of

REPO = Path(__file__).resolve().parents[2]


def card_table() -> dict[str, str]:
    """{key: ledger entry} from the data card's egress table (rows like | `key` | what | mechanism | entry |)."""
    rows = {}
    for line in (REPO / "data_cards" / "federated_privacy.md").read_text().splitlines():
        m = re.match(r"^\|\s*`([^`]+)`\s*\|(.*)\|(.*)\|\s*`?([\w-]+)`?\s*\|\s*$", line)
        if m:
            rows[m.group(1)] = m.group(4)
    return rows


@pytest.fixture(scope="module")
def dp_federation(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from federated.federate import run_federated
    from workbench.models.model import ModelConfig, build_model
    from workbench.train.pretrain_text import save_note_reader

    tmp = tmp_path_factory.mktemp("what_leaves")
    mp = pytest.MonkeyPatch()
    mp.setenv("WORKBENCH_CACHE", str(tmp / "cache"))
    reader = tmp / "reader"
    save_note_reader(build_model(ModelConfig(modalities=("notes",))), reader, "test reader, not pretrained")
    fed = FedConfig(cohort=str(tiny_cohort), num_server_rounds=2, dp=True, dp_epsilon=2.0, dp_budget=4.0,
                    dp_sample_rate=0.5, dp_epochs=2.0, dp_train="head", dp_optimizer="sgd", dp_lr=0.5,
                    state_dir=str(tmp / "nodes"), progress=False, run_tag="leaves", text_encoder=str(reader))
    summary = run_federated(fed, tmp / "run", client_mods=[capture_mod(tmp / "capture")])
    yield {"tmp": tmp, "fed": fed, "summary": summary, "capture": read_capture(tmp / "capture")}
    mp.undo()


@pytest.mark.slow
def test_every_message_a_dp_node_sends_is_in_the_data_cards_table(dp_federation: dict, tiny_cohort: Path) -> None:
    table = card_table()
    assert set(table) == set(DP_EGRESS), "the data card's table and federated.egress.DP_EGRESS disagree"
    sent = dp_federation["capture"]
    sites = [s.name for s in site_dirs_of(tiny_cohort)]
    assert {r["type"] for r in sent} == {"train", "evaluate"}
    assert len(sent) == 2 * 2 * len(sites)  # 2 rounds x (train + evaluate) x 3 nodes: every reply captured
    from federated import task

    exchanged = set(task.exchanged_names(task.build(dp_federation["fed"]), "all"))
    case_ids = {row["case_id"] for s in site_dirs_of(tiny_cohort) for row in csv.DictReader((s / "manifest.csv").read_text().splitlines())}
    for r in sent:
        assert "error" not in r, r
        for name, arrays in r["arrays"].items():
            assert name == "arrays" and set(arrays) <= exchanged  # model weights, nothing shaped like a case list
        scalars = {k: v for rec in (*r["metrics"].values(), *r["configs"].values()) for k, v in rec.items()}
        assert set(scalars) <= set(table), set(scalars) - set(table)
        for k, v in scalars.items():
            assert isinstance(v, (int, float, str)), (k, v)  # one scalar per key, never a per-case list
            assert not any(c in str(v) for c in case_ids), (k, v)
        if r["type"] == "evaluate":  # the node kept its metrics: no AUROC, no loss, no count of val cases
            assert set(r["metrics"]["metrics"]) == {"kept-local"}
    # every charged key has its ledger entry at the node that sent it
    for site in sites:
        led = PrivacyLedger.open(dp_federation["tmp"] / "nodes" / site / "privacy_ledger.json", site, 4.0, 1e-5)
        kinds = [e.kind for e in led.entries if e.run_id == "leaves"]
        assert kinds == ["count", "dp-sgd", "dp-sgd"]
        assert led.secure("leaves")  # OS entropy, every release
        counts = [r["metrics"]["metrics"]["num-examples"] for r in sent
                  if r["type"] == "train" and r["configs"]["info"]["site"] == site]
        released = max(1.0, next(e.value for e in led.entries if e.kind == "count"))
        assert counts == [released, released]  # the released count, not the true one, once per run
        local = [json.loads(x) for x in (dp_federation["tmp"] / "nodes" / site / "local_metrics.jsonl").read_text()
                 .splitlines()]
        assert [m["round"] for m in local] == [1, 2] and all(m["split"] == "val" for m in local)
    assert {table[k] for k in ("arrays", "num-examples")} == {"dp-sgd", "count"}
    rounds = json.loads((dp_federation["tmp"] / "run" / "rounds.json").read_text())
    assert rounds["privacy"]["private"] is True and rounds["privacy"]["secure_randomness"] is True


@pytest.mark.slow
def test_calibration_in_a_dp_run_is_each_nodes_own(dp_federation: dict, tiny_cohort: Path, tmp_path: Path) -> None:
    from workbench.runtime.run_uncertainty import RunUncertainty, UncertaintyConfig, calibrate_run

    run = dp_federation["tmp"] / "run"
    cal = dp_federation["summary"]["calibration"]
    assert cal["fitted_at"] == "each node, on its own records"
    unc = RunUncertainty.load(run)
    sites = [s.name for s in site_dirs_of(tiny_cohort)]
    assert unc.pooled is None and not unc.config.pool and sorted(unc.sites) == sites
    for s, u in unc.sites.items():
        assert set(u.sources.values()) <= {"site", "prior"}, (s, u.sources)  # nothing pooled
    assert json.loads((run / "calibration.json").read_text())["fitted_on"].startswith("prior only")
    assert json.loads((run / "calibration.json").read_text())["logit_shift"] == pytest.approx(np.log(3.0))
    with pytest.raises(Exception, match="pools nothing across sites"):
        unc.for_site("hospital_z")

    # another hospital's labels change: this hospital's calibrators do not move
    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, cohort)
    other = cohort / sites[1] / "manifest.csv"
    rows = list(csv.DictReader(other.read_text().splitlines()))
    for r in rows:
        if r["split"] in ("val", "calib"):
            r["label"] = str(1 - int(r["label"]))
    with open(other, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    run2 = tmp_path / "run2"
    shutil.copytree(run, run2)
    (run2 / "uncertainty.json").unlink()
    calibrate_run(run2, cohort, UncertaintyConfig(pool=True), progress=False)  # asking to pool changes nothing
    unc2 = RunUncertainty.load(run2)
    assert unc2.pooled is None
    assert unc2.sites[sites[0]].to_dict() == unc.sites[sites[0]].to_dict()
    assert unc2.sites[sites[1]].venn_abers.labels != unc.sites[sites[1]].venn_abers.labels
