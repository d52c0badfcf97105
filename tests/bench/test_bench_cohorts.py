"""The benchmarks' two cohorts (workbench/bench/common.py) and the CLI flags of the protocol (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workbench.bench import common
from workbench.bench.common import EVAL_SEED, check_evaluation_cohort, cohort_tag, evaluation_cohort
from workbench.cli import build_parser, main
from workbench.errors import WorkbenchError


def _fake_cohort(path: Path, *, preset: str = "full", sites: int = 4, patients: int = 500, seed: int = 0,
                 truth: str = "brock") -> Path:
    names = [f"hospital_{c}" for c in "abcd"[:sites]]
    for n in names:
        (path / n).mkdir(parents=True)
        (path / n / "manifest.csv").write_text("case_id\n")
    request: dict[str, Any] = {"preset": preset, "sites": names, "patients_per_site": patients, "seed": seed,
                               "transfer_syntax": None}
    if truth != "brock":  # as the generator writes it: brock requests name no truth
        request["truth"] = truth
    (path / "cohort.json").write_text(json.dumps({"request": request, "n_cases": sites * patients}))
    return path


@pytest.fixture
def generated(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record what would be generated instead of generating it."""
    calls: list[tuple[str, Any]] = []

    def fake(name: str, config: Any, progress: bool) -> Path:
        calls.append((name, config))
        return Path("/nowhere") / name

    monkeypatch.setattr(common, "_generated", fake)
    return calls


def test_cache_names_keep_brock_folders_and_mark_shifted() -> None:
    assert cohort_tag("full", 0) == "full-seed0"  # the existing cache is reused
    assert cohort_tag("full", 0, "shifted") == "full-seed0-shifted"


def test_the_evaluation_cohort_is_the_training_request_from_the_eval_seed(tmp_path: Path,
                                                                         generated: list[tuple[str, Any]]) -> None:
    evaluation_cohort(_fake_cohort(tmp_path / "a"))
    evaluation_cohort(_fake_cohort(tmp_path / "b", truth="shifted"), 42)
    evaluation_cohort(_fake_cohort(tmp_path / "c", preset="tiny", sites=2, patients=5), 42)
    (n1, c1), (n2, c2), (n3, c3) = generated
    assert (n1, c1.preset, c1.seed, c1.truth, c1.sites, c1.patients) == ("full-seed1000003", "full", EVAL_SEED,
                                                                         "brock", None, None)
    assert (n2, c2.seed, c2.truth) == ("full-seed42-shifted", 42, "shifted")
    assert (n3, c3.preset, c3.n_sites, c3.n_patients) == ("tiny-2x5-seed42", "tiny", 2, 5)


def test_the_evaluation_cohort_never_shares_the_training_seed(tmp_path: Path, generated: list) -> None:
    with pytest.raises(WorkbenchError, match="training cohort's seed"):
        evaluation_cohort(_fake_cohort(tmp_path / "a", seed=7), 7)
    assert generated == []


def test_an_evaluation_cohort_must_match_sites_and_truth(tmp_path: Path) -> None:
    train = _fake_cohort(tmp_path / "train")
    check_evaluation_cohort(train, _fake_cohort(tmp_path / "ok", seed=EVAL_SEED))
    with pytest.raises(WorkbenchError, match="is the training cohort"):
        check_evaluation_cohort(train, train)
    with pytest.raises(WorkbenchError, match="sites"):
        check_evaluation_cohort(train, _fake_cohort(tmp_path / "sites", sites=3, seed=EVAL_SEED))
    with pytest.raises(WorkbenchError, match="truth"):
        check_evaluation_cohort(train, _fake_cohort(tmp_path / "truth", truth="shifted", seed=EVAL_SEED))
    with pytest.raises(WorkbenchError, match="seed"):
        check_evaluation_cohort(train, _fake_cohort(tmp_path / "seed"))


def test_cli_flags_reach_the_benchmark_and_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    from workbench.bench import federated_bench, model_bench

    seen: dict[str, Any] = {}
    monkeypatch.setattr(model_bench, "run_model_bench", lambda **kw: seen.setdefault("model", kw) and {"ok": 1})
    monkeypatch.setattr(federated_bench, "run_federated_bench", lambda **kw: seen.setdefault("fed", kw) and {"ok": 1})
    assert main(["bench", "model", "--truth", "shifted", "--quick", "--seeds", "3", "--eval-seed", "11",
                 "--json", "--out", str(tmp_path)]) == 0
    assert main(["bench", "federated", "--json", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["federated.json", "model_shifted_quick.json"]
    assert {k: seen["model"][k] for k in ("truth", "seeds", "eval_seed", "quick")} == \
        {"truth": "shifted", "seeds": 3, "eval_seed": 11, "quick": True}
    assert seen["fed"]["seeds"] is None and seen["fed"]["eval_seed"] is None  # the benchmark's defaults apply
    assert main(["bench", "deid", "--truth", "shifted"]) == 2  # only cohort, model and federated take --truth
    capsys.readouterr()


def test_the_help_states_the_eval_seed_the_code_uses() -> None:
    bench = next(a for a in build_parser()._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
                 if a.prog.endswith(" bench"))
    assert str(EVAL_SEED) in bench.format_help().replace("\n", " ").replace("  ", " ")
