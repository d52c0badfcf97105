"""Benchmarks print one JSON object with the keys the issues name (values are checked by their own runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.cli import main

ENVELOPE = {"machine", "git_sha", "preset", "wall_s"}


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "--json prints exactly one line"
    return json.loads(out[0])


def test_bench_cohort(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    r = _run(["bench", "cohort", "--json", "--out", str(tmp_path)], capsys)
    assert set(r) >= ENVELOPE and {"bayes", "ct_only_ceiling", "notes_only_ceiling", "prevalence"} <= set(r)
    assert r["preset"] == "full" and r["n_cases"] == 2000
    assert set(r["prevalence"]) == {"hospital_a", "hospital_b", "hospital_c", "hospital_d"}
    assert json.loads((tmp_path / "cohort.json").read_text())["bayes"] == r["bayes"]


def test_bench_ingest_quick(tiny_cohort: Path, capsys: pytest.CaptureFixture) -> None:
    r = _run(["bench", "ingest", "--quick", "--json", "--cohort", str(tiny_cohort)], capsys)
    assert set(r) >= ENVELOPE
    assert set(r["slices_per_s"]) == {"workbench_cold", "monai_cold", "workbench_cached"}
    assert r["n_slices"] > 0 and r["cached_speedup"] > 1


def test_bench_deid_quick(capsys: pytest.CaptureFixture) -> None:
    r = _run(["bench", "deid", "--quick", "--json"], capsys)
    assert {"recall", "recall_eval_only", "retention"} <= set(r)
    assert r["recall"] >= 0.99 and r["recall_eval_only"] >= 0.95 and r["retention"] >= 0.95
