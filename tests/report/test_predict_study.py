"""`workbench predict` on studies outside the cohort's bookkeeping: the same files give the RUN's own prediction;
a radiologist's mark as an SR (3D point, or a circle on a referenced image) or a SEG gives the nodule centre; a
study without CT, a mark outside the volume, an empty note each get an error naming the file and the reason."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.helpers.marks import point_item, write_mark_sr
from workbench.cli import main
from workbench.data.case import find_site_case
from workbench.errors import CaseError, NotCTError
from workbench.runtime.study import nodule_from_file, read_note, scan_study, write_seg_mark


def _series(case) -> list[pydicom.Dataset]:  # noqa: ANN001
    files = sorted(Path(case.series_dir).iterdir())
    return sorted((pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))


def test_predict_on_a_cohort_study_gives_the_runs_own_prediction(
        tiny_calibrated_run: Path, tiny_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.explain.case import explain_case

    site = tiny_cohort / "hospital_a"
    case = next(c for c in [find_site_case(site, f"hospital_a_{i:04d}") for i in range(8)] if c.split == "test")
    ce = explain_case(tiny_calibrated_run, case.case_id, site, steps=4)
    note = tmp_path / "note.txt"
    note.write_text(case.note or "")
    x, y, z = case.nodule_lps_mm  # type: ignore[misc]
    assert main(["predict", str(tiny_calibrated_run), "--dicom", str(case.series_dir), f"--nodule={x},{y},{z}",
                 "--note", str(note), "--site", "hospital_a", "--node-dir", str(tmp_path / "node"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert abs(res["probability"] - ce.risk) <= 1e-5
    assert res["interval"] == pytest.approx(list(ce.assessment.interval), abs=1e-6)  # type: ignore[union-attr]
    assert res["prediction_set"] == list(ce.assessment.prediction_set)  # type: ignore[union-attr]
    assert res["refer"] == ce.assessment.refer  # type: ignore[union-attr]
    assert set(res["gate"]) == {"ct", "notes"} and abs(sum(res["gate"].values()) - 1) < 1e-4
    for key in ("long_axis_mm", "short_axis_mm", "volume_mm3", "nodule_type", "lobe", "lung_rads"):
        assert res[key] is not None, key
    assert res["case_id"].startswith("study-") and case.case_id not in json.dumps(res)
    # the same note as a FHIR DocumentReference gives the same risk
    doc = tmp_path / "note.json"
    doc.write_text(json.dumps({"resourceType": "DocumentReference", "status": "current", "content": [
        {"attachment": {"contentType": "text/plain", "data": base64.b64encode(note.read_bytes()).decode()}}]}))
    assert read_note(doc) == case.note
    # --report: the four reports, stating the same risk; the SR references the study's own CT in clinical mode
    out = tmp_path / "reports"
    assert main(["predict", str(tiny_calibrated_run), "--dicom", str(case.series_dir), f"--nodule={x},{y},{z}",
                 "--note", str(doc), "--site", "hospital_a", "--node-dir", str(tmp_path / "node"), "--report", str(out),
                 "--clinical", "--steps", "4", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert sorted(Path(f).name for f in again["files"]) == ["report.html", "report.json", "report.pdf",
                                                            "report_fhir.json", "report_sr.dcm"]
    assert abs(json.loads((out / "report.json").read_text())["probability"] - res["probability"]) <= 1e-9
    sr = pydicom.dcmread(out / "report_sr.dcm")
    assert sr.StudyInstanceUID == pydicom.dcmread(sorted(Path(case.series_dir).iterdir())[0]).StudyInstanceUID


def test_a_radiologists_mark_as_sr_point_sr_circle_or_seg_gives_the_nodule_centre(tiny_cohort: Path,
                                                                                  tmp_path: Path) -> None:

    case = find_site_case(tiny_cohort / "hospital_a", "hospital_a_0001")
    truth = np.asarray(case.nodule_lps_mm)
    series = _series(case)
    files = sorted(Path(case.series_dir).iterdir())
    # SCOORD3D point in the frame of reference
    point = point_item(truth)
    point.ReferencedFrameOfReferenceUID = series[0].FrameOfReferenceUID
    got = nodule_from_file(write_mark_sr(series[0], point, tmp_path / "point.dcm"), files)
    assert np.allclose(got, truth, atol=1e-6)
    # SCOORD circle on the slice nearest the centre: column/row from that image's geometry
    k = int(np.argmin([abs(float(d.ImagePositionPatient[2]) - truth[2]) for d in series]))
    img = series[k]
    ipp, (dr, dc) = np.asarray(img.ImagePositionPatient, float), (float(v) for v in img.PixelSpacing)
    iop = np.asarray(img.ImageOrientationPatient, float)
    col = float(np.dot(truth - ipp, iop[:3]) / dc) + 0.5
    row = float(np.dot(truth - ipp, iop[3:]) / dr) + 0.5
    circle = pydicom.Dataset()
    circle.ValueType, circle.GraphicType, circle.GraphicData = "SCOORD", "CIRCLE", [col, row, col + 4.0, row]
    ref = pydicom.Dataset()
    ref.ValueType = "IMAGE"
    sop = pydicom.Dataset()
    sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = img.SOPClassUID, img.SOPInstanceUID
    ref.ReferencedSOPSequence = [sop]
    circle.ContentSequence = [ref]
    got = np.asarray(nodule_from_file(write_mark_sr(series[0], circle, tmp_path / "circle.dcm"), files))
    assert np.allclose(got[:2], truth[:2], atol=1e-3) and abs(got[2] - truth[2]) <= float(img.SliceThickness or 2.5)
    # SEG: a 5 mm ball around the centre; its centroid
    vol = np.stack([d.pixel_array for d in series])
    zs = np.array([float(d.ImagePositionPatient[2]) for d in series])
    jj, ii = np.meshgrid(np.arange(vol.shape[1]), np.arange(vol.shape[2]), indexing="ij")
    mask = np.zeros(vol.shape, dtype=bool)
    for s, zz in enumerate(zs):
        xy = ipp[None, None, :2] + ii[..., None] * dc * iop[None, None, :2] + jj[..., None] * dr * iop[None, None, 3:5]
        mask[s] = ((xy[..., 0] - truth[0]) ** 2 + (xy[..., 1] - truth[1]) ** 2 + (zz - truth[2]) ** 2) <= 25.0
    write_seg_mark(series, mask, tmp_path / "seg.dcm", "test")
    got = np.asarray(nodule_from_file(tmp_path / "seg.dcm", files))
    assert np.linalg.norm(got - truth) <= max(dc, dr, float(np.diff(zs).mean())), (got, truth)


def test_bad_studies_marks_and_notes_are_refused_naming_the_file(tiny_calibrated_run: Path, tiny_cohort: Path,
                                                                tmp_path: Path) -> None:
    from workbench.report.study import StudyRequest, predict_study

    case = find_site_case(tiny_cohort / "hospital_a", "hospital_a_0001")
    not_ct = tmp_path / "mr"
    not_ct.mkdir()
    ds = pydicom.dcmread(sorted(Path(case.series_dir).iterdir())[0])
    ds.Modality, ds.SeriesInstanceUID, ds.SOPInstanceUID = "MR", pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.save_as(not_ct / "mr.dcm")
    with pytest.raises(NotCTError, match=r"no CT series \(found: MR \(1 files\)\)"):
        scan_study(not_ct)
    far = StudyRequest(tiny_calibrated_run, Path(case.series_dir), nodule=(900.0, 0.0, 0.0),
                       node_dir=tmp_path / "node")
    with pytest.raises(CaseError, match="outside the CT volume"):
        predict_study(far)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(CaseError, match="empty.txt: the note is empty"):
        read_note(empty)
    with pytest.raises(CaseError, match="not a mark"):
        nodule_from_file(sorted(Path(case.series_dir).iterdir())[0], [])
    # a study folder with the mark beside the series: the CT is still found and used alone
    mixed = tmp_path / "study"
    shutil.copytree(case.series_dir, mixed)  # type: ignore[arg-type]
    shutil.copy(not_ct / "mr.dcm", mixed / "zz_other.dcm")
    study = scan_study(mixed)
    assert len(study.ct) == len(list(Path(case.series_dir).iterdir())) and list(study.others) == ["MR"]
