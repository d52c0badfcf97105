"""The README's tables are printed from the JSON (workbench/bench/tables.py), mean and interval as written there."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.bench.tables import cell, main, model_table


def _result(truth: str) -> dict:
    keys = ("fused", "ct_only", "notes_only", "late_fusion", "brock_oracle", "bayes", "ct_only_ceiling",
            "notes_only_ceiling")
    auroc = dict(zip(keys, (0.861, 0.80, 0.68, 0.86, 0.84, 0.90, 0.82, 0.70), strict=True))
    return {"truth": truth, "n_seeds": 5, "n_eval": 2000, "auroc": auroc,
            "auroc_ci95": {k: [v - 0.02, v + 0.02] for k, v in auroc.items() if k not in ("bayes",)},
            "fusion_gain": {"value": 0.061, "ci95": [0.041, 0.083]}, "ece": 0.031, "ece_ci95": [0.02, 0.05],
            "ece_true_risk": 0.018, "ece_true_risk_ci95": [0.012, 0.03],
            "per_site_auroc": {"hospital_a": 0.85, "hospital_b": 0.87}, "per_site_auroc_ci95": {},
            "per_sex_auroc": {"female": 0.86, "male": 0.862}}


def test_cells_show_mean_and_interval_or_the_number_alone() -> None:
    assert cell(0.8612, [0.8401, 0.8833]) == "0.861 [0.84, 0.88]"
    assert cell(0.9, None) == "0.900"
    assert cell(None) == "-"


def test_the_table_carries_the_json_figures(tmp_path: Path, capsys) -> None:
    text = model_table([_result("brock"), _result("shifted")])
    assert "| brock (5 seeds, 2000 cases) | 0.861 [0.84, 0.88] | 0.800 [0.78, 0.82]" in text
    assert "0.900 |" in text  # Bayes: a reference without an interval
    assert "0.061 [0.04, 0.08]" in text and "0.957" in text  # the paired gain; fused / Bayes
    f = tmp_path / "model.json"
    f.write_text(json.dumps(_result("brock")))
    assert main([str(f)]) == 0 and "hospital_b" in capsys.readouterr().out
    assert main([]) == 2


def test_the_readme_model_table_is_the_committed_json() -> None:
    """The README's model table is what the tables module prints from bench/results: nobody retypes a figure."""
    root = Path(__file__).resolve().parents[2]
    marker = "<!-- python -m workbench.bench.tables bench/results/model.json bench/results/model_shifted.json -->"
    readme = (root / "README.md").read_text()
    assert marker in readme
    shown = readme.split(marker, 1)[1].lstrip("\n")
    results = [json.loads((root / "bench/results" / f).read_text()) for f in ("model.json", "model_shifted.json")]
    assert shown.startswith(model_table(results))
