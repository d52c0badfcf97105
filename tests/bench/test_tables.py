"""The README's tables are printed from the JSON (workbench/bench/tables.py), mean and interval as written there."""

from __future__ import annotations

import json
import re
from pathlib import Path

from workbench.bench.tables import calibration_table, cell, federated_table, main, model_table, render


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


def _federated(truth: str) -> dict:
    au = {"centralized": 0.835, "fedavg": 0.842, "fedavg_dp": 0.798}
    return {"truth": truth, "n_seeds": 3, "n_eval": 2000, "auroc": au, "auroc_ci95": {"fedavg": [0.82, 0.86]},
            "dp_curve": {"1": 0.798, "3": 0.840, "8": 0.842}, "dp_curve_ci95": {"1": [0.776, 0.819]},
            "fedavg_minus_pooled": {"value": 0.0074, "ci95": [0.0019, 0.0144]},
            "dp_minus_fedavg": {e: {"value": -0.044, "ci95": [-0.062, -0.027]} for e in ("1", "3", "8")},
            "epsilon_max_over_repeats": {"1": 1.0, "3": 2.9959, "8": 7.9884},
            "per_site_auroc": {"hospital_a": 0.833}, "auroc_fusion_only_round": 0.84}


def test_the_federated_and_calibration_tables_carry_their_json() -> None:
    text = federated_table([_federated("brock"), _federated("shifted")])
    assert "| brock (3 seeds, 2000 cases) | 0.835 | 0.842 [0.82, 0.86] | 0.798 [0.78, 0.82] | 0.840 | 0.842 |" in text
    assert "| shifted | 0.007 [0.00, 0.01] | -0.044 [-0.06, -0.03]" in text and "1.000 / 2.996 / 7.988" in text
    assert render([_federated("brock")]) == federated_table([_federated("brock")])
    cal = {"n_seeds": 5, "ece_per_site": {"a": 0.06}, "ece_per_site_ci95": {"a": [0.04, 0.09]},
           "ece_true_risk_per_site": {"a": 0.025}, "ece_excess_per_site": {"a": 0.035},
           "ece_excess_per_site_ci95": {"a": [0.0, 0.05]}, "n_test_per_site": {"a": 500}, "ece_excess_target": 0.03}
    assert "| a | 500 | 0.060 [0.04, 0.09] | 0.025 | 0.035 [0.00, 0.05] | **no** |" in calibration_table(cal)
    assert render([cal]) == calibration_table(cal)


def test_every_readme_table_is_the_committed_json() -> None:
    """Each table after a ``python -m workbench.bench.tables FILES`` marker is what the module prints from them."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    markers = re.findall(r"<!-- python -m workbench\.bench\.tables ([^>]*?) -->", readme)
    assert len(markers) >= 2  # the model's and the federation's at least
    for files in markers:
        shown = readme.split(f"<!-- python -m workbench.bench.tables {files} -->", 1)[1].lstrip("\n")
        results = [json.loads((root / f).read_text()) for f in files.split()]
        assert shown.startswith(render(results)), files


def test_the_readme_model_table_is_the_committed_json() -> None:
    """The README's model table is what the tables module prints from bench/results: nobody retypes a figure."""
    root = Path(__file__).resolve().parents[2]
    marker = "<!-- python -m workbench.bench.tables bench/results/model.json bench/results/model_shifted.json -->"
    readme = (root / "README.md").read_text()
    assert marker in readme
    shown = readme.split(marker, 1)[1].lstrip("\n")
    results = [json.loads((root / "bench/results" / f).read_text()) for f in ("model.json", "model_shifted.json")]
    assert shown.startswith(model_table(results))
