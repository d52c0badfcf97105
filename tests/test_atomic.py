"""One atomic-write helper: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.atomic import atomic_write, sweep_leftovers, write_text
from workbench.jsonout import write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_json(target, {"risk": 0.31})
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text('{"risk": 0.9', encoding="utf-8")  # half a file, then the writer dies
        raise RuntimeError("killed")
    assert target.read_text(encoding="utf-8") == '{\n  "risk": 0.31\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_the_temporary_keeps_the_suffix_so_format_guessing_writers_work(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"\x89PNG")
    assert (tmp_path / "plot.png").read_bytes() == b"\x89PNG"


def test_a_folder_is_swapped_in_whole(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    with atomic_write(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_leftovers_of_a_killed_writer_are_swept(tmp_path: Path) -> None:
    (tmp_path / ".case_0001.4242.tmp").mkdir()  # a series folder a dead process was writing
    (tmp_path / ".model.4242.old").mkdir()
    write_text(tmp_path / "keep.txt", "kept")
    gone = sweep_leftovers(tmp_path)
    assert sorted(p.name for p in gone) == [".case_0001.4242.tmp", ".model.4242.old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
