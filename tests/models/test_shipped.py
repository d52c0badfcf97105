"""The shipped readers and fusion starting model: small, free of machine paths, loadable, and still reading the
facts their card states, measured on phantoms and notes they never saw (workbench/bench/shipped_bench.py)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from workbench.bench.shipped_bench import ct_figures, note_figures
from workbench.errors import WorkbenchError
from workbench.models.model import load_model
from workbench.models.shipped import MAX_SHIPPED_BYTES, PRETRAINED_DIR, SHIPPED, shipped, shipped_bytes


def test_shipped_models_are_small_and_name_no_machine_path() -> None:
    assert shipped_bytes() <= MAX_SHIPPED_BYTES
    for name in SHIPPED:
        assert shipped(name).is_dir()
    for f in PRETRAINED_DIR.rglob("*"):
        if f.suffix in (".json", ".md"):
            text = f.read_text(encoding="utf-8")
            assert not re.search(r"(/root/|/home/|/tmp/|\.cache/)", text), f"{f} names a machine path"
    with pytest.raises(WorkbenchError, match="no shipped model"):
        shipped("bert_large")


def test_fusion_init_loads_with_an_untrained_head_and_both_readers_frozen_inside() -> None:
    model = load_model(shipped("fusion_init"))
    assert model.modalities == ("ct", "notes")
    head = model.fusion.head.weight  # label-free: the risk head was never trained
    assert torch.count_nonzero(head) == 0
    card = json.loads((shipped("fusion_init") / "fusion_init.json").read_text())
    assert card["ct_corpus_seed"] == 77_077 and card["note_corpus_seed"] == 90_211


def _card_figures() -> dict:
    return json.loads((PRETRAINED_DIR / "held_out.json").read_text())


@pytest.mark.slow
def test_ct_reader_still_reads_fresh_phantoms_as_its_card_says(tmp_path) -> None:
    card = _card_figures()["ct_reader"]
    got = ct_figures(60, tmp_path, progress=False)
    # 60 fresh phantoms instead of the card's 300: the same measurement, a wider spread
    assert got["diameter_r2"] >= card["diameter_r2"] - 0.15, got
    assert got["solid_auroc"] >= card["solid_auroc"] - 0.12, got
    assert got["diameter_r2"] > 0.5  # far above a reader that reads nothing (R^2 about 0)


def test_note_reader_still_reads_fresh_notes_as_its_card_says(tmp_path) -> None:
    card = _card_figures()["note_reader"]
    got = note_figures(200, tmp_path)
    for key in ("ever_smoker_auroc", "prior_cancer_auroc", "family_history_auroc"):
        assert got[key] >= card[key] - 0.08, (key, got)
    assert got["ever_smoker_auroc"] > 0.9
