"""The fuzz part of ``workbench bench reliability``: a small run finds no crash and no hang and its counts add
up; the harness itself is shown to catch what it claims to (a planted crash, a refusal without a message, a
hang past the time bound, an allocation past the memory bound, a dying worker)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.bench.reliability import fuzz
from workbench.bench.reliability.fuzz import TARGET_ORDER, FuzzConfig, Harness, run
from workbench.bench.reliability.fuzz_seeds import prepare_seeds


@pytest.fixture(scope="module")
def fuzz_work(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder whose cohort is a copy of the session's tiny cohort (the seeds are built from it)."""
    work = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(tiny_cohort, work / "cohort")
    prepare_seeds(work)
    return work


def test_small_fuzz_finds_no_crash_and_counts_add_up(fuzz_work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fuzz, "code_fingerprint", lambda: "fixed")  # others may edit the tree meanwhile
    cfg = FuzzConfig(cases={"dicom": 30, "sr_mark": 20, "deid": 25, "tokenizer": 20, "note_file": 20, "ingest": 20})
    out = run(quick=True, work=fuzz_work, progress=False, config=cfg)
    keys = out["keys"]["fuzz"]
    assert keys == {"cases": out["totals"]["cases"], "crashes": 0, "hangs": 0}, out["failures"]
    assert set(out["targets"]) == set(TARGET_ORDER)
    for name, t in out["targets"].items():
        assert t["cases"] == t["ok"] + t["refused"] + t["crash"] + t["hang"] + t["memory"], name
        assert t["cases"] + t["unbuilt"] <= cfg.cases[name] and t["cases"] >= cfg.cases[name] // 2, (name, t)
    assert keys["cases"] == sum(t["cases"] for t in out["targets"].values())
    assert all(v == ["ok"] for v in out["seed_cases"].values()), out["seed_cases"]  # every seed loads unharmed
    again = run(quick=True, work=fuzz_work, progress=False, config=cfg)  # kept per target: nothing run again
    assert again["totals"] == out["totals"] and again["worker_starts"] == 0


def test_harness_counts_planted_crash_refusal_hang_memory_and_death(tmp_path: Path) -> None:
    with Harness(None, tmp_path, time_bound_s=2.0, memory_bound_mb=256) as h:
        crash = h.run("planted_crash", {})
        assert (crash.status, crash.detail) == ("crash", "ValueError: planted crash")
        assert crash.signature.startswith("ValueError at ")
        assert h.run("planted_silent", {}).status == "crash"  # a WorkbenchError must say why
        refused = h.run("planted_refusal", {})
        assert (refused.status, refused.detail) == ("refused", "planted.dcm: a planted refusal")
        assert h.run("planted_memory", {"bytes": 1 << 34}).status == "memory"
        assert h.run("planted_refusal", {}).status == "refused"  # the worker survives a MemoryError
        assert h.starts == 1
        hang = h.run("planted_hang", {"seconds": 60})
        assert hang.status == "hang" and 2.0 <= hang.seconds < 10
        assert h.run("planted_hang", {"seconds": 0.01}).status == "ok"  # a fresh worker after the hang
        assert h.starts == 2
        died = h.run("planted_death", {})
        assert died.status == "crash" and "worker died (exit code 3)" in died.detail
        assert h.run("planted_crash", {}).status == "crash" and h.starts == 3
