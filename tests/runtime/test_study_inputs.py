"""Hostile input to the study reader of `workbench predict`: mutated mark files, odd notes and points. Each call
either gives a finite point / the note's text or raises a WorkbenchError naming the file; never another exception,
never a hang (seeded mutations, so a failure replays)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.helpers.marks import point_item, write_mark_sr
from workbench.errors import WorkbenchError
from workbench.runtime.study import nodule_from_file, parse_point, read_note

BOUND_S = 5.0


def _sr(ct: pydicom.Dataset, path: Path) -> Path:
    return write_mark_sr(ct, point_item((-10.0, 20.0, -30.0)), path)


def _survives(fn, *args) -> None:  # noqa: ANN001
    t0 = time.monotonic()
    try:
        out = fn(*args)
        if isinstance(out, tuple):
            assert len(out) == 3 and np.all(np.isfinite(out)), out
    except WorkbenchError as e:
        assert str(e), "an error without a message"
    assert time.monotonic() - t0 < BOUND_S, f"{fn.__name__} took {time.monotonic() - t0:.1f} s"


def test_mutated_mark_files_give_a_point_or_a_named_error(tiny_cohort: Path, tmp_path: Path) -> None:
    ct_files = sorted((tiny_cohort / "hospital_a" / "dicom" / "hospital_a_0000").iterdir())
    good = _sr(pydicom.dcmread(ct_files[0]), tmp_path / "mark.dcm").read_bytes()
    assert nodule_from_file(tmp_path / "mark.dcm", ct_files) == (-10.0, 20.0, -30.0)
    rng = np.random.default_rng(20261203)
    for i in range(300):
        raw = bytearray(good)
        kind = i % 3
        if kind == 0:  # flip bytes
            for j in rng.integers(0, len(raw), size=int(rng.integers(1, 8))):
                raw[j] = int(rng.integers(0, 256))
        elif kind == 1:  # truncate
            raw = raw[: int(rng.integers(0, len(raw)))]
        else:  # insert garbage
            at = int(rng.integers(0, len(raw)))
            raw[at:at] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8))
        f = tmp_path / f"m{i}.dcm"
        f.write_bytes(bytes(raw))
        _survives(nodule_from_file, f, ct_files)


@pytest.mark.parametrize("graphic", [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0], [], [1.0] * 7, [float("nan")] * 3])
def test_odd_graphic_data_is_a_named_error(tiny_cohort: Path, tmp_path: Path, graphic: list) -> None:
    ct_files = sorted((tiny_cohort / "hospital_a" / "dicom" / "hospital_a_0000").iterdir())
    path = _sr(pydicom.dcmread(ct_files[0]), tmp_path / "mark.dcm")
    ds = pydicom.dcmread(path)
    ds.ContentSequence[0].GraphicData = graphic
    ds.save_as(path)
    with pytest.raises(WorkbenchError, match="mark.dcm"):
        nodule_from_file(path, ct_files)


def test_odd_notes_and_points(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    cases = {
        "binary.txt": bytes(rng.integers(0, 256, size=4096, dtype=np.uint8)),
        "mixed.txt": "Patient 患者 مريض пациент: 12 mm nodule, former smoker.\u200b".encode(),
        "list.json": b"[1, 2, 3]",
        "other.json": json.dumps({"resourceType": "Patient"}).encode(),
        "badb64.json": json.dumps({"resourceType": "DocumentReference",
                                   "content": [{"attachment": {"data": "%%%not-base64%%%"}}]}).encode(),
        "nocontent.json": json.dumps({"resourceType": "DocumentReference", "content": "x"}).encode(),
        "huge.txt": b"a" * 900_000,
        "ok.json": json.dumps({"resourceType": "DocumentReference", "content": [
            {"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"note").decode()}}]}).encode(),
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        _survives(read_note, tmp_path / name)
    assert read_note(tmp_path / "ok.json") == "note"
    assert "пациент" in read_note(tmp_path / "mixed.txt")
    for text in ("1,2", "a,b,c", "nan,1,2", "1,2,inf", "", "1,,2,3,4"):
        with pytest.raises(WorkbenchError, match="--nodule"):
            parse_point(text)
    assert parse_point(" -80.5, 32,-120 ") == (-80.5, 32.0, -120.0)
