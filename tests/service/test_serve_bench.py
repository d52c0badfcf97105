"""`workbench bench serve`'s parts, small: two studies through a real Orthanc and the service, the fast path's
speed and AUROC beside PyTorch's; the JSON keys the issue names are there and mean what they say."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.service import pacs_sandbox

pytestmark = pytest.mark.skipif(pacs_sandbox.available() is not None, reason=str(pacs_sandbox.available()))


def test_the_serve_bench_parts_give_the_named_keys(tiny_calibrated_run: Path, tiny_cohort: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.bench.serve_bench import _export, auroc_delta, predict_speed, service_batch

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # the bench's work folder, here
    run = tmp_path / "run"
    shutil.copytree(tiny_calibrated_run, run)
    _export(run, tiny_cohort, n=4)
    speed = predict_speed(run, tiny_cohort, n=3, repeats=2)
    assert speed["predict_ms_fp32"] > 0 and speed["predict_ms_fast"] > 0 and speed["predict_speed_cases"] == 3
    auc = auroc_delta(run, tiny_cohort, progress=False)
    assert abs(auc["auroc_delta_fast"]) <= 0.005 and auc["logit_max_abs_diff_fast"] < 1e-4
    out = service_batch(run, tiny_cohort, 2, steps=4, progress=False)
    assert out["studies"] == 2 and out["lost"] == 0 and out["duplicated"] == 0
    assert out["done"] + out["quarantined"] == 2 and out["studies_per_min"] > 0
    assert set(out["stage_ms"]) >= {"receive", "load", "preprocess", "predict", "explain", "report", "store"}
    assert all(out["stage_ms"][k] > 0 for k in ("receive", "load", "report", "store")), out["stage_ms"]
    assert out["engine"] == ["onnxruntime"]
