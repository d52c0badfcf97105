"""The valid files every fuzz case starts from, built once under the fuzz part's work folder and reused.

Mutating real files written by the project's own generator (not hand-made headers) means a mutant differs from
what a hospital sends by exactly the damage the case describes. The seeds are small on purpose, so that a case
costs milliseconds: a few slices of a JPEG-LS and of an RLE series as the generator wrote them, the same CT
cropped to 48 x 48 pixels around its nodule in native little-endian, that crop as one enhanced multi-frame file,
radiologist's marks on the crop (an SR point, an SR image coordinate, an SR 3D polygon, a SEG), and a two-case
site folder (manifest, notes, one series of each kind).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_write, write_text
from workbench.jsonout import write_json

SEEDS_VERSION = 1
SLICES = 8  # per seed series: enough for a gap, a duplicate and a reordering to mean something
CROP = 48  # pixels per side of the native seed


def prepare_seeds(work: Path, *, progress: bool = False) -> Path:
    """``work/seeds`` (built from a tiny cohort generated into ``work/cohort``), reused when already built."""
    from workbench.cohort.config import CohortConfig
    from workbench.cohort.generate import generate_cohort

    seeds = work / "seeds"
    stamp = seeds / "seeds.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("version") == SEEDS_VERSION:
        return seeds
    cohort = work / "cohort"
    if not (cohort / "cohort.json").is_file():
        generate_cohort(cohort, CohortConfig(preset="tiny", seed=7, workers=2), progress=progress)
    with atomic_write(seeds) as tmp:
        tmp.mkdir(parents=True)
        _build(cohort, tmp)
        write_json(tmp / "seeds.json", {"version": SEEDS_VERSION, "cohort": str(cohort)})
    return seeds


def _site_rows(site: Path) -> list[dict[str, str]]:
    with (site / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _near_nodule(series: Path, z: float, n: int) -> list[tuple[Path, Any]]:
    """The ``n`` slices (headers and pixels) nearest the nodule's z, in position order."""
    import pydicom

    slices = [(f, pydicom.dcmread(f)) for f in sorted(series.iterdir())]
    slices.sort(key=lambda fd: float(fd[1].ImagePositionPatient[2]))
    k = int(np.argmin([abs(float(ds.ImagePositionPatient[2]) - z) for _, ds in slices]))
    lo = max(0, min(k - n // 2, len(slices) - n))
    return slices[lo:lo + n]


def _crop(ds: Any, centre: tuple[float, float], size: int) -> Any:
    """The slice cropped to ``size`` pixels around an LPS (x, y) point, as native explicit VR little endian."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    c0 = int(np.clip(round((centre[0] - ipp[0]) / dc) - size // 2, 0, int(ds.Columns) - size))
    r0 = int(np.clip(round((centre[1] - ipp[1]) / dr) - size // 2, 0, int(ds.Rows) - size))
    pixels = ds.pixel_array[r0:r0 + size, c0:c0 + size].copy()
    ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=int(ds.BitsStored))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.ImagePositionPatient = [f"{v:.4f}" for v in (ipp[0] + c0 * dc, ipp[1] + r0 * dr, ipp[2])]
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _build(cohort: Path, out: Path) -> None:
    from pydicom.uid import generate_uid

    sites = sorted(p for p in cohort.iterdir() if (p / "manifest.csv").is_file())
    rows = {s.name: _site_rows(s)[0] for s in sites}
    first = {s.name: s / rows[s.name]["series_dir"] for s in sites}
    nodule = {s.name: tuple(float(rows[s.name][f"nodule_{a}_mm"]) for a in "xyz") for s in sites}
    series = out / "series"
    # the generator's own files, untouched: one JPEG-LS and one RLE series (site a and b)
    for name, site in (("jpegls", sites[0].name), ("rle", sites[1].name)):
        (series / name).mkdir(parents=True)
        for f, _ in _near_nodule(first[site], nodule[site][2], SLICES):
            shutil.copy2(f, series / name / f.name)
    # the third site's first CT cropped around its nodule, native: fast to load, the nodule inside
    site_c = sites[2].name
    x, y, z = nodule[site_c]
    uid = generate_uid()
    (series / "native").mkdir()
    native = []
    for f, ds in _near_nodule(first[site_c], z, SLICES):
        ds = _crop(ds, (x, y), CROP)
        ds.SeriesInstanceUID = uid
        ds.save_as(series / "native" / f.name, enforce_file_format=True)
        native.append(ds)
    _enhanced(native, series / "enhanced")
    _marks(native, (x, y, z), out / "marks")
    _site(sites[0], rows[sites[0].name], series / "jpegls", native, out / "site" / "fuzz_site")
    write_json(out / "nodules.json", {"native": [x, y, z]})


def _enhanced(native: list[Any], folder: Path) -> None:
    from highdicom import UID
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    folder.mkdir()
    enhanced = LegacyConvertedEnhancedCTImage(native, series_instance_uid=UID(), series_number=2,
                                              sop_instance_uid=UID(), instance_number=1)
    enhanced.save_as(folder / "enhanced.dcm")


def _marks(native: list[Any], point: tuple[float, float, float], folder: Path) -> None:
    """Four ways a radiologist's mark arrives: SCOORD3D point and polygon SRs, a SCOORD circle SR, a SEG."""
    import pydicom

    from workbench.runtime.study import point_item, write_mark_sr, write_point_mark, write_seg_mark

    folder.mkdir()
    ct_dir = folder.parent / "series" / "native"
    k = int(np.argmin([abs(float(d.ImagePositionPatient[2]) - point[2]) for d in native]))
    img = native[k]
    write_point_mark(min(ct_dir.iterdir()), point, folder / "point.dcm")
    poly = point_item(point, img.FrameOfReferenceUID)
    x, y, z = point
    poly.GraphicType = "POLYGON"
    poly.GraphicData = [x - 3, y, z, x, y + 3, z, x + 3, y, z, x - 3, y, z]
    write_mark_sr(img, poly, folder / "polygon.dcm")
    ipp = np.asarray(img.ImagePositionPatient, dtype=float)
    dr, dc = (float(v) for v in img.PixelSpacing)
    col, row = (x - ipp[0]) / dc + 0.5, (y - ipp[1]) / dr + 0.5
    circle = pydicom.Dataset()
    circle.ValueType, circle.GraphicType, circle.GraphicData = "SCOORD", "CIRCLE", [col, row, col + 4.0, row]
    ref, sop = pydicom.Dataset(), pydicom.Dataset()
    ref.ValueType = "IMAGE"
    sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = img.SOPClassUID, img.SOPInstanceUID
    ref.ReferencedSOPSequence = [sop]
    circle.ContentSequence = [ref]
    write_mark_sr(img, circle, folder / "circle.dcm")
    mask = np.zeros((len(native), CROP, CROP), dtype=bool)
    r, c = int(round(row - 0.5)), int(round(col - 0.5))
    mask[k, max(r - 2, 0):r + 3, max(c - 2, 0):c + 3] = True
    write_seg_mark(native, mask, folder / "seg.dcm", "fuzz")


def _site(source: Path, row: dict[str, str], jpegls: Path, native: list[Any], out: Path) -> None:
    """A two-case site: the JPEG-LS slices with the first case's nodule and note, the native crop with a note."""
    from workbench.cohort.generate import MANIFEST_COLUMNS
    from workbench.data.case import read_notes

    (out / "dicom" / "case_0").mkdir(parents=True)
    (out / "dicom" / "case_1").mkdir(parents=True)
    for f in sorted(jpegls.iterdir()):
        shutil.copy2(f, out / "dicom" / "case_0" / f.name)
    for i, ds in enumerate(native):
        ds.save_as(out / "dicom" / "case_1" / f"{i:03d}.dcm", enforce_file_format=True)
    notes = read_notes(source / "notes.jsonl")
    centre = np.mean([np.asarray(d.ImagePositionPatient, dtype=float) for d in native], axis=0) \
        + np.array([CROP / 2 * float(native[0].PixelSpacing[1]), CROP / 2 * float(native[0].PixelSpacing[0]), 0.0])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MANIFEST_COLUMNS)
    w.writerow(["fz_0000", "dicom/case_0", row["nodule_x_mm"], row["nodule_y_mm"], row["nodule_z_mm"], "n0", "1",
                "train"])
    w.writerow(["fz_0001", "dicom/case_1", *(f"{v:.2f}" for v in centre), "n1", "0", "val"])
    write_text(out / "manifest.csv", buf.getvalue())
    texts = list(notes.values())
    lines = [json.dumps({"note_id": "n0", "text": notes[row["note_id"]]}),
             json.dumps({"note_id": "n1", "text": texts[1 % len(texts)]})]
    write_text(out / "notes.jsonl", "\n".join(lines) + "\n")
