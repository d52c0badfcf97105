"""The node's fast CPU path: the RUN's model exported to ONNX scores as PyTorch does (within the stated tolerance),
a study scored through it states the same risk, and an export made from other weights is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from workbench.cli import main
from workbench.errors import WorkbenchError


def test_the_onnx_export_scores_like_pytorch_and_a_stale_export_is_refused(
        tiny_calibrated_run: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    from workbench.data.case import find_site_case
    from workbench.report.study import StudyRequest, predict_study
    from workbench.runtime.fast import TOLERANCE, FastModel
    from workbench.runtime.run import load_run

    run = tmp_path / "run"
    shutil.copytree(tiny_calibrated_run, run)
    assert main(["fast", str(run), str(tiny_cohort), "--cases", "6"]) == 0
    info = json.loads((run / "fast" / "fast.json").read_text())
    assert info["checked_cases"] == 4 + 6 + 6 and max(info["max_abs_diff"].values()) <= TOLERANCE
    # a study scored both ways states the same risk, interval and set
    case = next(c for c in (find_site_case(tiny_cohort / "hospital_b", f"hospital_b_{i:04d}") for i in range(8))
                if c.split == "test")
    note = tmp_path / "note.txt"
    note.write_text(case.note or "")
    req = dict(run=run, dicom=Path(case.series_dir), nodule=tuple(case.nodule_lps_mm), note=note, site="hospital_b",
               node_dir=tmp_path / "node")
    slow, fast = predict_study(StudyRequest(**req)), predict_study(StudyRequest(**req, fast=True))
    assert fast["engine"] == "onnxruntime" and slow["engine"] == "pytorch"
    assert abs(fast["probability"] - slow["probability"]) <= 1e-5 and abs(fast["logit"] - slow["logit"]) <= TOLERANCE
    assert fast["prediction_set"] == slow["prediction_set"] and fast["refer"] == slow["refer"]
    # the fast model's batch outputs agree on a batch of several cases too
    model, _ = load_run(run)
    fm = FastModel(run, model)
    from workbench.data.case import load_cases
    from workbench.runtime.encode import encode_cases

    data = encode_cases(load_cases(tiny_cohort / "hospital_a"), model.tokenizer, modalities=model.modalities,
                        max_length=model.config.text.max_length, progress=False)
    batch = {k: v for k, v in data.batch(torch.arange(len(data))).items() if k != "label"}
    with torch.no_grad():
        ref = model.forward_batch(batch)
    got = fm.forward_batch(batch)
    assert torch.allclose(got.logits, ref.logits, atol=TOLERANCE) and torch.allclose(got.gate, ref.gate, atol=1e-5)
    # weights changed after the export: refused, never silently used
    weights = next((run / "model").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b" ")
    with pytest.raises(WorkbenchError, match="other weights"):
        FastModel(run, model)
