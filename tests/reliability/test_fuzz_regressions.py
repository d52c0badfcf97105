"""Every crash the fuzz part of ``workbench bench reliability`` found, kept as a small case: each input is now
refused with a ``WorkbenchError`` whose message names the file or the reason (before the fix: a TypeError,
a NotImplementedError, a UnicodeDecodeError, a Rust panic, a singular affine...).

The damage is planted with the fuzz harness's own mutation (``mutate_folder``: raw element bytes written as UN,
byte flips), on a series built here from pydicom's shipped CT_small.dcm.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless, generate_uid

from workbench.bench.reliability.fuzz_targets import mutate_folder
from workbench.data.case import Case, load_cases
from workbench.data.dicom_io import load_ct_series
from workbench.data.ingest import check_note, ingest_site
from workbench.errors import CaseError, DicomError, WorkbenchError
from workbench.runtime.encode import encode_note


def _series(folder: Path, n: int = 3, *, rle: bool = False) -> Path:
    """``n`` axial slices 2.5 mm apart, one series, in ``folder``."""
    folder.mkdir(parents=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    uid = generate_uid()
    for k in range(n):
        ds = copy.deepcopy(base)
        ds.ImagePositionPatient = [-50.0, -40.0, 2.5 * k]
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if rle:
            ds.compress(RLELossless)
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


def _raw(path: str, raw: bytes, file: int = -1) -> dict:
    return {"op": "tag", "file": file, "path": path, "raw": raw.hex()}


def _refused(folder: Path, *words: str) -> str:
    with pytest.raises(DicomError) as info:
        load_ct_series(folder)
    msg = str(info.value)
    assert msg.strip() and all(w in msg for w in words), msg
    return msg


def test_empty_pixel_data_is_named_not_a_type_error(tmp_path: Path) -> None:
    folder = _series(tmp_path / "s")
    mutate_folder(folder, [_raw("PixelData", b"", file=0)])
    _refused(folder, "000.dcm", "pixel data truncated (0 of")


def test_bits_stored_with_two_values_is_a_bad_pixel_header(tmp_path: Path) -> None:
    folder = _series(tmp_path / "s")
    mutate_folder(folder, [_raw("BitsStored", bytes.fromhex("f51387e49f"))])  # 5 bytes: US values, then junk
    _refused(folder, ".dcm")


@pytest.mark.parametrize(("path", "raw", "words"), [
    ("ImagePositionPatient", b"0\\inf\\inf", ("ImagePositionPatient", "not finite")),
    ("ImagePositionPatient", b"1e400\\2\\3 ", ("ImagePositionPatient", "not finite")),
    ("ImagePositionPatient", b"1\\2", ("ImagePositionPatient has 2 values, expected 3",)),
    ("PixelSpacing", b"nan\\0.7 ", ("PixelSpacing", "not finite")),
    ("PixelSpacing", b"0\\0.7 ", ("PixelSpacing", "must be positive")),
    ("RescaleSlope", b"1e300 ", ("RescaleSlope", "beyond any CT")),
    ("Rows", b"\x00\x00", ("Rows/Columns", "must be positive")),
    ("NumberOfFrames", b"abc ", ("NumberOfFrames",)),
])
def test_absurd_geometry_is_refused_naming_the_element(tmp_path: Path, path: str, raw: bytes,
                                                       words: tuple[str, ...]) -> None:
    """Before: an infinite or singular affine came back (every consumer then failed), or a ValueError."""
    folder = _series(tmp_path / "s")
    mutate_folder(folder, [_raw(path, raw)])
    _refused(folder, ".dcm", *words)


def test_enhanced_frame_with_infinite_position_is_refused(tmp_path: Path) -> None:
    from highdicom import UID
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    folder = _series(tmp_path / "s")
    slices = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    out = tmp_path / "e"
    out.mkdir()
    LegacyConvertedEnhancedCTImage(slices, series_instance_uid=UID(), series_number=2, sop_instance_uid=UID(),
                                   instance_number=1).save_as(out / "enhanced.dcm")
    mutate_folder(out, [_raw("PerFrameFunctionalGroupsSequence[2].PlanePositionSequence[0].ImagePositionPatient",
                             b"0\\inf\\inf ")])
    _refused(out / "enhanced.dcm", "enhanced.dcm", "ImagePositionPatient")


def test_corrupt_file_meta_element_is_an_unreadable_file(tmp_path: Path) -> None:
    """A flipped VR in the file meta group: pydicom raised NotImplementedError only when the element was read."""
    folder = _series(tmp_path / "s", n=2)
    f = sorted(folder.iterdir())[0]
    data = bytearray(f.read_bytes())
    at = data.index(b"\x02\x00\x02\x00UI") + 4  # (0002,0002) Media Storage SOP Class UID, explicit VR "UI"
    data[at:at + 2] = b"U*"
    f.write_bytes(bytes(data))
    _refused(folder, f.name, "unreadable DICOM file")


def test_rle_frame_shorter_than_its_header_is_named_not_a_rust_panic(tmp_path: Path) -> None:
    """pylibjpeg-rle panics (pyo3's PanicException, a BaseException) when Rows is smaller than the frame; the
    panic killed the caller's process-wide ``except Exception``."""
    folder = _series(tmp_path / "s", n=2, rle=True)
    mutate_folder(folder, [_raw("Rows", (4).to_bytes(2, "little"))])
    _refused(folder, ".dcm", "cannot decode pixel data")


def test_notes_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.csv").write_text("case_id,series_dir,nodule_x_mm,nodule_y_mm,nodule_z_mm,note_id\n"
                                       "c1,,,,,n1\n", encoding="utf-8")
    (site / "notes.jsonl").write_bytes(json.dumps({"note_id": "n1", "text": "ok"}).encode() + b"\n\x89\x18\x8d\n")
    with pytest.raises(CaseError, match=r"notes\.jsonl:2: not UTF-8 text"):
        load_cases(site)


def test_manifest_that_is_not_utf8_or_csv_is_named(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.csv").write_bytes(b"case_id,series_dir\n\xe8\x93,x\n")
    with pytest.raises(CaseError, match=r"manifest\.csv: not UTF-8 text \(byte 20\)"):
        load_cases(site)
    (site / "manifest.csv").write_text("case_id,series_dir,nodule_x_mm,nodule_y_mm,nodule_z_mm,note_id\n"
                                       + "c1," + "x" * 200_000 + ",,,,\n", encoding="utf-8")
    with pytest.raises(CaseError, match=r"manifest\.csv: not a readable CSV \(field larger than field limit"):
        load_cases(site)


@pytest.mark.parametrize("text", ["\udcfa;\udcdb", "Mr. Smith \ud800 seen today"])
def test_note_with_a_lone_surrogate_is_refused_not_a_tokenizer_type_error(text: str) -> None:
    """A notes.jsonl line with a ``\\ud800`` escape decodes to a lone surrogate; the tokenizer raised TypeError."""
    from workbench.models.tokenizer import load_tokenizer

    case = Case(case_id="c", site="s", split=None, series_dir=None, nodule_lps_mm=None, note=text)
    assert "lone surrogate" in (check_note(case) or "")
    with pytest.raises(CaseError, match="not valid Unicode"):
        encode_note(text, load_tokenizer(), 64)


def test_case_with_neither_series_nor_note_is_listed_so_counts_add_up(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.csv").write_text("case_id,series_dir,nodule_x_mm,nodule_y_mm,nodule_z_mm,note_id\n"
                                       "c1,,,,,\n", encoding="utf-8")
    summary = ingest_site(site, cache_dir=tmp_path / "cache", progress=False).summary()
    assert summary["cases"] == 1 and summary["usable"] == 0 and summary["unusable"] == ["c1"]
    assert summary["refused"][0]["reason"] == "no series_dir and no note_id"


def test_a_healthy_series_still_loads(tmp_path: Path) -> None:
    img = load_ct_series(_series(tmp_path / "s"))
    assert img.shape[-1] == 3 and np.all(np.isfinite(img.affine.numpy()))
    assert not isinstance(img, WorkbenchError)


def test_a_manifest_series_dir_that_leaves_the_site_folder_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "hospital_x"
    site.mkdir()
    (site / "notes.jsonl").write_text("")
    for bad in ("../../etc", "/etc", "dicom/../../outside"):
        (site / "manifest.csv").write_text("case_id,series_dir,nodule_x_mm,nodule_y_mm,nodule_z_mm,note_id\n"
                                          f"c1,{bad},0,0,0,\n")
        with pytest.raises(WorkbenchError, match="leaves the site folder"):
            load_cases(site)
