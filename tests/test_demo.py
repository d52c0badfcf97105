"""``workbench demo`` end to end, made tiny: two cohorts of different seeds, the shipped readers, one DP round,
the evaluation cohort scored whole with an interval, one case explained and reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.cohort.generate import read_truth
from workbench.demo import DEMO_EVAL_SEED, DemoConfig, require_a_trained_node, run_demo
from workbench.errors import WorkbenchError


@pytest.mark.integration
def test_tiny_demo_scores_a_separate_evaluation_cohort_with_an_interval(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    config = DemoConfig(preset="tiny", patients=10, eval_patients=10, rounds=1)
    assert run_demo(out, config=config) == 0
    printed = capsys.readouterr().out
    train = json.loads((out / "cohort" / "cohort.json").read_text())["request"]
    evaluation = json.loads((out / "evaluation_cohort" / "cohort.json").read_text())["request"]
    assert train["seed"] == 0 and evaluation["seed"] == DEMO_EVAL_SEED
    assert train["sites"] == evaluation["sites"]
    # no case of the evaluation cohort is a training case: different seeds give different patients
    seen = {(t.site, t.age, t.diameter_mm, t.smoking) for t in read_truth(out / "cohort")}
    fresh = read_truth(out / "evaluation_cohort")
    assert sum((t.site, t.age, t.diameter_mm, t.smoking) in seen for t in fresh) <= 2

    res = json.loads((out / "evaluation.json").read_text())
    assert res["split"] == "all" and res["target"].endswith("evaluation_cohort")
    usable = len(fresh) - sum(1 for t in fresh if not (t.has_ct or t.has_note))
    assert res["overall"]["n"] == usable - len(res.get("refused", []))
    assert 0.5 <= res["true_risk_auroc"] <= 1.0
    assert "auroc_ci95" in res["overall"]
    assert "result: the federated DP model's AUROC on" in printed
    assert "the shipped readers" in printed and "held out" in printed
    assert (out / "reports").is_dir() and any((out / "reports").rglob("report.pdf"))


@pytest.mark.integration
def test_a_second_demo_in_the_same_folder_trains_again_on_fresh_demo_ledgers(tmp_path: Path, capsys) -> None:
    """A second `make demo` must not meet nodes whose lifetime budget the first one spent (every node would refuse
    and the demo would score the untrained starting model): the demo's own synthetic nodes start afresh, and say so."""
    out = tmp_path / "demo"
    config = DemoConfig(preset="tiny", patients=10, eval_patients=10, rounds=1, epsilon=8.0)
    assert run_demo(out, config=config) == 0
    capsys.readouterr()
    assert run_demo(out, config=config) == 0
    printed = capsys.readouterr().out
    assert "start with fresh ledgers" in printed and "refused:" not in printed
    rounds = json.loads((out / "run" / "rounds.json").read_text())["rounds"]
    assert all("noise_multiplier" in n for n in rounds[0]["nodes"])  # every node trained under DP this time too


def test_a_federation_in_which_every_node_refused_is_not_scored(tmp_path: Path) -> None:
    """Every node refused (a spent budget): the RUN holds the starting model, and the demo stops naming each reason
    instead of printing its chance-level AUROC; one node that trained is enough to go on."""
    sites = {"hospital_a", "hospital_b"}
    refused = {"hospital_a": "hospital_a: lifetime budget 8 spent", "hospital_b": "hospital_b: lifetime budget 8 spent"}
    with pytest.raises(WorkbenchError, match="no node trained") as err:
        require_a_trained_node(sites, refused, tmp_path / "run")
    assert "hospital_a: lifetime budget 8 spent" in str(err.value) and "hospital_b" in str(err.value)
    assert str(tmp_path / "run") in str(err.value)
    require_a_trained_node(sites, {"hospital_a": refused["hospital_a"]}, tmp_path / "run")  # hospital_b trained
