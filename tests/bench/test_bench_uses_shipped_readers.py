"""A full benchmark run starts from the shipped readers and fusion init (the same recipe; CARD.md), not a rebuild."""

from __future__ import annotations

from pathlib import Path

from workbench.bench.federated_bench import _is_shipped_recipe, _plan
from workbench.bench.model_bench import SHIPPED_CT_CASES, SHIPPED_NOTES, _reader, shared_ct_reader
from workbench.models.shipped import shipped


def test_the_full_recipe_takes_the_shipped_readers(tmp_path: Path) -> None:
    assert shared_ct_reader(SHIPPED_CT_CASES, progress=False) == shipped("ct_reader")
    note = _reader(tmp_path, SHIPPED_NOTES, progress=False)
    assert note == tmp_path / "note_reader"
    assert (note / "model.safetensors").read_bytes() == (shipped("note_reader") / "model.safetensors").read_bytes()
    card = (shipped("ct_reader").parent / "CARD.md").read_text()
    assert f"--cases {SHIPPED_CT_CASES}" in card and f"--notes {SHIPPED_NOTES}" in card  # the card names this recipe


def test_the_fusion_init_is_shipped_only_for_its_own_recipe_and_readers(tmp_path: Path) -> None:
    full, quick = _plan(False)["fusion_init"], _plan(True)["fusion_init"]
    assert _is_shipped_recipe(shipped("ct_reader"), shipped("note_reader"), full)
    assert not _is_shipped_recipe(shipped("ct_reader"), shipped("note_reader"), quick)
    assert not _is_shipped_recipe(tmp_path, shipped("note_reader"), full)  # another CT reader
    assert not _is_shipped_recipe(shipped("ct_reader"), tmp_path, full)  # another note reader
