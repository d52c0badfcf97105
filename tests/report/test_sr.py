"""The DICOM SR a real reader parses: dciodvfy without errors, dsrdump shows the numbers, evidence holds the series."""

from __future__ import annotations

import subprocess

import pydicom
import pytest

from tests.helpers.tools import has_tool
from workbench.report.content import ModelProvenance, Patient, ReportContent, SourceSeries
from workbench.report.source import remap_uid
from workbench.report.sr import write_sr

CT = "1.2.840.10008.5.1.4.1.1.2"


def content(mode: str = "export") -> ReportContent:
    return ReportContent(
        case_id="hospital_a_0007", mode=mode, created="2026-12-01T12:00:00+00:00", probability=0.371,
        interval=(0.31, 0.42), interval_method="inductive Venn-Abers on calib", prediction_set=["benign", "malignant"],
        coverage_target=0.9, refer=True, refer_reasons=["the 90% set holds both classes"], diameter_mm=8.5,
        finding_site="left lung", nodule_center_lps_mm=(60.0, 10.0, -120.0), modality_contributions={"ct": 0.6, "notes": 0.4},
        attention_rollout={"ct": 0.5, "notes": 0.5}, top_phrases=[], key_images=[],
        model=ModelProvenance("nodule-workbench fused CT + note model", "0123abcd4567ef89", ["hospital_a"], True,
                              {"hospital_a": 0.99}, 1e-5),
        patient=Patient("MRN123", "Doe^Jane", "19550129", "F", "ACC9") if mode == "clinical" else Patient(),
        source=SourceSeries("2.25.11", "2.25.22", "2.25.33", CT, ["2.25.101", "2.25.102", "2.25.103"],
                            study_date="20250326" if mode == "clinical" else ""),
        long_axis_mm=9.4, short_axis_mm=7.6, mean_diameter_mm=8.5, volume_mm3=301.24, nodule_type="solid", lobe="LUL",
        lung_rads="4A", lung_rads_management="3-month LDCT; PET/CT may be considered if there is a >= 8 mm solid component.")


@pytest.mark.parametrize("mode", ["export", "clinical"])
def test_sr_validates_and_carries_probability_diameter_and_source_series(mode: str, tmp_path) -> None:  # noqa: ANN001
    path = write_sr(content(mode), tmp_path / "sr.dcm")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.StudyInstanceUID == "2.25.11" and ds.SeriesInstanceUID != "2.25.22"  # same study, its own series
    ev = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ev.SeriesInstanceUID == "2.25.22"
    assert [i.ReferencedSOPInstanceUID for i in ev.ReferencedSOPSequence] == ["2.25.101", "2.25.102", "2.25.103"]
    assert (ds.PatientID == "hospital_a_0007") == (mode == "export")
    if has_tool("dciodvfy"):
        res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors
    if has_tool("dsrdump"):
        out = subprocess.run(["dsrdump", "+Pu", str(path)], capture_output=True, text=True, timeout=60).stdout
        assert '"Probability of cancer")="37.1" (%,UCUM' in out
        # its interval [31%, 42%] as the TID 310 uncertainty range, in the same unit: 37.1 - 6.1 and 37.1 + 4.9
        assert '"-, range of lower measurement uncertainty")="6.1" (%,UCUM' in out
        assert '"+, range of upper measurement uncertainty")="4.9" (%,UCUM' in out
        assert '"Diameter")="8.5" (mm,UCUM' in out and "(27925004,SCT,\"Nodule\")" in out
        assert '"Long axis")="9.4" (mm,UCUM' in out and '"Short axis")="7.6" (mm,UCUM' in out
        assert '"Volume")="301.2" (mm3,UCUM' in out
        assert '(44714003,SCT,"Upper lobe of left lung")' in out  # the lobe as the coded finding site
        assert '"Lung-RADS v2022 category")=(LR4A,99NODWB,"Lung-RADS 4A")' in out
        assert "(7771000,SCT,\"Left\")" in out and '"Algorithm Version")="0123abcd4567ef89"' in out
        assert '"Source Series for Segmentation")="2.25.22"' in out  # the referenced series, named in the tree
        assert "SCOORD3D" in out and "ELLIPSOID" in out  # the nodule in the series' frame of reference


def test_uid_remapping_is_consistent_and_keyed() -> None:
    a, b = remap_uid("1.2.3.4", b"node-secret"), remap_uid("1.2.3.4", b"node-secret")
    assert a == b and a.startswith("2.25.") and len(a) <= 64
    assert remap_uid("1.2.3.4", b"another-node") != a and remap_uid("1.2.3.5", b"node-secret") != a
