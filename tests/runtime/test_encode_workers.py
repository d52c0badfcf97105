"""encode_cases with workers reads the CTs in spawned processes and gives the serial result, row for row."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import torch

from workbench.data.case import SPLITS
from workbench.models.model import ModelConfig, build_model
from workbench.runtime.encode import encode_cases
from workbench.runtime.run import cases_of


def test_two_workers_give_the_serial_tensors_and_the_same_refusals(tiny_cohort: Path, tmp_path: Path) -> None:
    cases = cases_of([tiny_cohort], SPLITS)[:10]
    broken = next(c for c in cases if c.has_ct)
    bad_series = tmp_path / "empty_series"
    bad_series.mkdir()
    cases = [*cases, replace(broken, case_id="broken-ct", series_dir=str(bad_series))]  # a CT that cannot be read
    tok = build_model(ModelConfig(modalities=("notes",))).tokenizer
    serial = encode_cases(cases, tok, progress=False)
    parallel = encode_cases(cases, tok, progress=False, workers=2)
    assert parallel.case_ids == serial.case_ids
    assert parallel.refused == serial.refused
    for k, v in serial.tensors.items():
        assert torch.equal(parallel.tensors[k], v), k
    shutil.rmtree(bad_series)
