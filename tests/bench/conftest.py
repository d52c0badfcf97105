"""Shared fixtures of the bench tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.bench.model_seeds import Bundle
from workbench.data.cache import PreprocessCache
from workbench.data.case import SPLITS
from workbench.models.model import ModelConfig, build_model
from workbench.models.shipped import shipped
from workbench.runtime.encode import encode_cases
from workbench.runtime.run import cases_of


@pytest.fixture(scope="module")
def work(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared folder as `bench model --prepare-only` leaves it: the tiny cohort's train and val encoded, the
    same cohort whole as the evaluation set, the shipped readers copied in, two epochs."""
    w = tmp_path_factory.mktemp("work") / "model-tiny"
    w.mkdir()
    tok = build_model(ModelConfig(modalities=("notes",))).tokenizer
    cache = PreprocessCache(tmp_path_factory.mktemp("cache"))
    for split in ("train", "val"):
        encode_cases(cases_of([tiny_cohort], [split]), tok, cache=cache, progress=False).save(w / f"encoded_{split}.pt")
    (w / "eval-tiny").mkdir()
    encode_cases(cases_of([tiny_cohort], SPLITS), tok, cache=cache, progress=False).save(w / "eval-tiny" / "encoded.pt")
    shutil.copytree(shipped("note_reader"), w / "note_reader")
    shutil.copytree(shipped("ct_reader"), w / "ct_reader")
    Bundle(eval_name="tiny", epochs=2, patience=0).write(w)
    return w
