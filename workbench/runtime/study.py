"""One study from outside any cohort, made into a ``Case``: its CT series, the nodule a radiologist marked, the note.

A hospital's study does not sit in a cohort folder with a manifest: ``workbench predict`` gets a folder of DICOM
files (the CT series, perhaps beside other series and the radiologist's mark), a nodule location and a note file.
This module finds the pieces and refuses what it cannot use with the file and the reason:

- **the CT series**: the folder's DICOM files grouped by SeriesInstanceUID; the CT series with the most images
  is used (a note says so when there were several); no CT series at all is an error naming what was found.
- **the nodule**: a point in patient coordinates (LPS, mm, as a viewer click gives it), or a radiologist's mark
  stored as DICOM: a Structured Report (TID 1500 or any SR) with a 3D coordinate (SCOORD3D, in the frame of
  reference) or an image coordinate (SCOORD on a referenced CT image; column/row placed with that image's
  position, orientation and spacing), or a Segmentation (the centroid of its first segment's voxels). A point,
  polygon or ellipse gives its centre. A mark outside the CT volume is an error.
- **the note**: a text file, or a FHIR DocumentReference (JSON) whose attachment is text. Raw, as in ingestion:
  it is de-identified on its way to the model.

The case id is a pseudonym of the StudyInstanceUID (``study-`` + 12 hex digits of an HMAC with the node's secret),
so nothing printed or written names the patient unless ``--clinical`` reports ask for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.case import Case
from workbench.errors import CaseError, DicomError, NotCTError, WorkbenchError

MAX_NOTE_CHARS = 200_000  # a note longer than this is not a clinical note (a whole record pasted, a binary file)
SR_MODALITY, SEG_MODALITY = "SR", "SEG"


@dataclass(frozen=True)
class StudyFiles:
    """The DICOM files of a folder, grouped: ``ct`` the chosen CT series' files, ``others`` what else was there."""

    ct: list[Path]
    ct_series_uid: str
    study_uid: str
    others: dict[str, list[Path]]  # modality -> files (SR, SEG, other series)
    notes: list[str]


def _headers(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - pydicom raises many kinds for a non-DICOM file; it is skipped and counted
        return None


def scan_study(folder: str | Path) -> StudyFiles:
    """Group the DICOM files under ``folder`` (one level of subfolders too) by series; pick the CT series."""
    root = Path(folder)
    if root.is_file():
        root = root.parent
    if not root.is_dir():
        raise DicomError(f"{folder}: no such folder (the study's DICOM files)")
    files = sorted(p for p in [*root.glob("*"), *root.glob("*/*")] if p.is_file() and not p.name.startswith(".")
                   and p.name.upper() != "DICOMDIR")
    series: dict[str, dict[str, Any]] = {}
    skipped = 0
    for f in files:
        ds = _headers(f)
        try:  # pydicom decodes lazily: a corrupt element fails here, and the file is skipped and counted
            uid, modality, study = (str(ds.SeriesInstanceUID), str(ds.get("Modality", "?")),
                                    str(ds.get("StudyInstanceUID", ""))) if ds is not None else ("", "", "")
        except Exception:  # noqa: BLE001
            uid = ""
        if not uid:
            skipped += 1
            continue
        s = series.setdefault(uid, {"modality": modality, "files": [], "study": study})
        s["files"].append(f)
    cts = sorted((s for s in series.values() if s["modality"] == "CT"), key=lambda s: -len(s["files"]))
    found = ", ".join(f"{s['modality']} ({len(s['files'])} files)" for s in series.values()) or "no DICOM file"
    if not cts:
        raise NotCTError(f"{root}: no CT series (found: {found}{f'; {skipped} files not DICOM' if skipped else ''})")
    ct = cts[0]
    uid = next(u for u, s in series.items() if s is ct)
    notes = [f"{root}: {len(cts)} CT series; the one with the most images ({len(ct['files'])}) was used"] \
        if len(cts) > 1 else []
    others: dict[str, list[Path]] = {}
    for s in series.values():
        if s is not ct:
            others.setdefault(s["modality"], []).extend(s["files"])
    return StudyFiles(ct["files"], uid, ct["study"], others, notes)


@contextmanager
def series_folder(study: StudyFiles) -> Iterator[Path]:
    """A folder holding the CT series alone (links in a temporary folder when other files share its folder)."""
    parents = {p.parent for p in study.ct}
    if len(parents) == 1:
        folder = parents.pop()
        if sum(1 for p in folder.iterdir() if p.is_file()) == len(study.ct):
            yield folder
            return
    with tempfile.TemporaryDirectory(prefix="workbench-series-") as tmp:
        links = {}
        for i, p in enumerate(study.ct):
            link = Path(tmp) / f"{i:05d}_{p.name}"
            link.symlink_to(p.resolve())
            links[str(link)] = str(p)
        try:
            yield Path(tmp)
        except WorkbenchError as exc:  # an error names the study's own file, not the temporary link to it
            msg = str(exc)
            for link_path, real in links.items():
                msg = msg.replace(link_path, real)
            raise type(exc)(msg.replace(tmp, str(parents.pop() if len(parents) == 1 else "the study"))) from None


def parse_point(text: str) -> tuple[float, float, float]:
    """``X,Y,Z`` (LPS mm) -> a point; a clear error otherwise."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        x, y, z = (float(p) for p in parts)
    except ValueError:
        x = y = z = float("nan")
    if not np.all(np.isfinite([x, y, z])):
        raise CaseError(f"--nodule {text!r}: expected X,Y,Z in mm (patient coordinates, LPS), e.g. -80.5,32,-120")
    return x, y, z


def _content_items(ds: Any) -> Iterator[Any]:
    for item in getattr(ds, "ContentSequence", []) or []:
        yield item
        yield from _content_items(item)


def _centre(graphic: list[float], dims: int, kind: str) -> np.ndarray:
    """The centre of a graphic: a CIRCLE's first point is its centre; a closed POLYGON repeats its first vertex;
    otherwise (POINT, MULTIPOINT, ELLIPSE's axis ends, ELLIPSOID, POLYLINE) the mean of the points."""
    pts = np.asarray(graphic, dtype=float).reshape(-1, dims)
    if kind == "CIRCLE":
        return pts[0]
    if kind == "POLYGON" and len(pts) > 1 and np.allclose(pts[0], pts[-1]):
        pts = pts[:-1]
    return pts.mean(axis=0)


def _image_point(col: float, row: float, image: Any) -> np.ndarray:
    """An image's (column, row) pixel position (SCOORD: 0.0 is the outer edge of the first pixel) in LPS mm."""
    ipp = np.asarray(image.ImagePositionPatient, dtype=float)
    iop = np.asarray(image.ImageOrientationPatient, dtype=float)
    dr, dc = (float(v) for v in image.PixelSpacing)  # row spacing, column spacing
    # SCOORD's origin is the top-left corner of the top-left pixel; ImagePositionPatient is that pixel's centre
    return ipp + iop[:3] * dc * (col - 0.5) + iop[3:] * dr * (row - 0.5)


def _mark_from_sr(path: Path, ds: Any, ct_files: list[Path]) -> tuple[float, float, float]:
    for item in _content_items(ds):
        vt = str(item.get("ValueType", ""))
        if vt == "SCOORD3D" and "GraphicData" in item:
            centre = _centre(list(item.GraphicData), 3, str(item.get("GraphicType", "")))
            return tuple(float(v) for v in centre)  # type: ignore[return-value]
        if vt == "SCOORD" and "GraphicData" in item:
            refs = [r for sub in getattr(item, "ContentSequence", []) or []
                    for r in getattr(sub, "ReferencedSOPSequence", []) or []]
            refs += list(getattr(item, "ReferencedSOPSequence", []) or [])
            if not refs:
                raise CaseError(f"{path}: the SR's image coordinate names no image (no ReferencedSOPSequence)")
            uid = str(refs[0].ReferencedSOPInstanceUID)
            image = next((h for f in ct_files if (h := _headers(f)) is not None and str(h.SOPInstanceUID) == uid),
                         None)
            if image is None:
                raise CaseError(f"{path}: the SR marks image {uid}, which is not in the CT series given")
            col, row = _centre(list(item.GraphicData), 2, str(item.get("GraphicType", "")))
            return tuple(float(v) for v in _image_point(col, row, image))  # type: ignore[return-value]
    raise CaseError(f"{path}: the SR holds no spatial coordinate (SCOORD or SCOORD3D) to take the nodule from")


def _mark_from_seg(path: Path) -> tuple[float, float, float]:
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
        numbers = list(seg.segment_numbers)
        volume = seg.get_volume(segment_numbers=numbers[:1], combine_segments=True)
    except Exception as exc:  # noqa: BLE001 - highdicom's errors are many; the file is named with the reason
        raise CaseError(f"{path}: not a usable DICOM Segmentation ({type(exc).__name__}: {exc})") from None
    voxels = np.argwhere(np.asarray(volume.array) > 0)
    if len(voxels) == 0:
        raise CaseError(f"{path}: the segmentation's first segment is empty")
    centre = np.append(voxels.mean(axis=0), 1.0)
    return tuple(float(v) for v in (np.asarray(volume.affine) @ centre)[:3])  # type: ignore[return-value]


def nodule_from_file(path: str | Path, ct_files: list[Path]) -> tuple[float, float, float]:
    """The nodule centre (LPS mm) a radiologist's mark file gives: an SR or a SEG (module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise CaseError(f"--nodule-from {p}: no such file")
    ds = _headers(p)
    if ds is None:
        raise CaseError(f"{p}: not a DICOM file (a mark is an SR or a SEG)")
    try:
        modality = str(ds.get("Modality", ""))
    except Exception as exc:  # noqa: BLE001 - pydicom decodes lazily: a corrupt element fails on first access
        raise CaseError(f"{p}: an unreadable DICOM header ({type(exc).__name__}: {exc})") from None
    if modality not in (SR_MODALITY, SEG_MODALITY):
        raise CaseError(f"{p}: a {modality or 'non-image'} file, not a mark (expected an SR or a SEG)")
    try:
        point = _mark_from_sr(p, ds, ct_files) if modality == SR_MODALITY else _mark_from_seg(p)
    except CaseError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed mark (odd GraphicData, broken items) is named, never a crash
        raise CaseError(f"{p}: an unreadable {modality} mark ({type(exc).__name__}: {exc})") from None
    if not np.all(np.isfinite(point)):
        raise CaseError(f"{p}: the mark's coordinates are not finite numbers {point}")
    return point


def read_note(path: str | Path) -> str:
    """A note file's raw text: plain text, or a FHIR DocumentReference's text attachment."""
    p = Path(path)
    if not p.is_file():
        raise CaseError(f"--note {p}: no such file")
    raw = p.read_bytes()
    if len(raw) > 4 * MAX_NOTE_CHARS:
        raise CaseError(f"{p}: {len(raw):,} bytes is not a clinical note (at most {MAX_NOTE_CHARS:,} characters)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CaseError(f"{p}: not UTF-8 text (a note is text, or a FHIR DocumentReference JSON)") from None
    if text.lstrip().startswith("{"):
        text = _document_reference_text(p, text)
    if not text.strip():
        raise CaseError(f"{p}: the note is empty")
    if len(text) > MAX_NOTE_CHARS:
        raise CaseError(f"{p}: {len(text):,} characters is not a clinical note (at most {MAX_NOTE_CHARS:,})")
    return text


def _document_reference_text(p: Path, text: str) -> str:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CaseError(f"{p}: starts like JSON but is not ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(doc, dict) or doc.get("resourceType") != "DocumentReference":
        kind = doc.get("resourceType", "object") if isinstance(doc, dict) else type(doc).__name__
        raise CaseError(f"{p}: a JSON {kind}, not a FHIR DocumentReference")
    contents = doc.get("content")
    for content in contents if isinstance(contents, list) else []:
        att = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(att, dict) or not str(att.get("contentType", "text/plain")).startswith("text/"):
            continue
        if "data" in att:
            try:
                return base64.b64decode(str(att["data"]), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise CaseError(f"{p}: the DocumentReference's attachment is not base64 UTF-8 text") from None
    raise CaseError(f"{p}: the DocumentReference has no text attachment (content[].attachment.data, text/*)")


def study_case_id(study_uid: str, secret: bytes) -> str:
    """A pseudonym for the study: the same study gives the same id at this node, and it names no one."""
    return "study-" + hmac.new(secret, study_uid.encode(), hashlib.sha256).hexdigest()[:12]


def check_inside(point: tuple[float, float, float], image: Any, where: str) -> None:
    """Refuse a nodule mark outside the CT volume (``image``: ``load_ct_series``'s MetaTensor, RAS affine)."""
    ras = np.array([-point[0], -point[1], point[2], 1.0])
    ijk = np.linalg.solve(np.asarray(image.affine, dtype=float), ras)[:3]
    shape = np.asarray(image.shape[1:], dtype=float)
    if np.any(ijk < -0.5) or np.any(ijk > shape - 0.5):
        raise CaseError(f"{where}: the nodule mark ({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f}) mm LPS lies "
                        f"outside the CT volume (voxel {np.round(ijk, 1).tolist()} of {shape.astype(int).tolist()})")


def make_case(case_id: str, site: str, series_dir: Path, nodule: tuple[float, float, float],
              note: str | None) -> Case:
    return Case(case_id=case_id, site=site, split=None, series_dir=series_dir, nodule_lps_mm=nodule, note=note)


def write_mark_sr(ct: Any, item: Any, path: Path) -> Path:
    """A radiologist's mark as a minimal Comprehensive 3D SR: ``item`` (a spatial-coordinate content item) under a
    container, in the patient, study and frame of reference of the CT dataset ``ct`` (what a viewer stores when a
    nodule is clicked)."""
    import pydicom

    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.34", pydicom.uid.generate_uid()
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = ct.StudyInstanceUID, ct.FrameOfReferenceUID
    ds.SeriesInstanceUID, ds.Modality, ds.ValueType = pydicom.uid.generate_uid(), "SR", "CONTAINER"
    ds.ContentSequence = [item]
    ds.SeriesDescription = "nodule mark"
    for kw in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate",
               "StudyTime", "StudyID", "ReferringPhysicianName", "StudyDescription"):  # the study's patient
        if kw in ct:
            setattr(ds, kw, ct.data_element(kw).value)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def write_point_mark(ct_file: str | Path, lps_mm: tuple[float, float, float], path: str | Path) -> Path:
    """A radiologist's point mark at ``lps_mm`` as an SR in the study (and frame of reference) of ``ct_file``."""
    import pydicom

    ct = pydicom.dcmread(ct_file, stop_before_pixels=True)
    return write_mark_sr(ct, point_item(lps_mm, ct.FrameOfReferenceUID), Path(path))


def point_item(lps: tuple[float, float, float] | list[float], frame_of_reference_uid: str | None = None) -> Any:
    """A SCOORD3D POINT at ``lps`` (mm), in the given frame of reference when named."""
    import pydicom

    item = pydicom.Dataset()
    item.ValueType, item.GraphicType, item.GraphicData = "SCOORD3D", "POINT", [float(v) for v in lps]
    if frame_of_reference_uid:
        item.ReferencedFrameOfReferenceUID = frame_of_reference_uid
    return item


__all__ = ["MAX_NOTE_CHARS", "StudyFiles", "check_inside", "make_case", "nodule_from_file", "parse_point",
           "point_item", "read_note", "scan_study", "series_folder", "study_case_id", "write_mark_sr",
           "write_point_mark"]


def write_seg_mark(sources: list[Any], mask: np.ndarray, path: str | Path, manufacturer: str = "workbench") -> Path:
    """A radiologist's nodule outline as a binary DICOM SEG (one segment, "nodule") over the CT datasets
    ``sources``, ``mask`` shaped (slices, rows, columns) like them: the other kind of mark ``nodule_from_file``
    reads (its centroid)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=1, segment_label="nodule", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Nodule, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)],
        series_instance_uid=hd.UID(), series_number=300, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=manufacturer, manufacturer_model_name=manufacturer, software_versions="0",
        device_serial_number="0")
    seg.save_as(Path(path))
    return Path(path)
