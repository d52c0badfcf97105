"""`workbench report` end to end on the tiny cohort: four files real readers open, and no PHI in export mode."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pydicom

from tests.helpers.cohort import truth_phi


def _texts(out) -> dict[str, str]:  # noqa: ANN001
    from pypdf import PdfReader

    texts = {"report.pdf": "\n".join(p.extract_text() or "" for p in PdfReader(out / "report.pdf").pages)}
    for name in ("report.html", "report_fhir.json", "report.json"):
        texts[name] = (out / name).read_text(encoding="utf-8")
    ds = pydicom.dcmread(out / "report_sr.dcm")
    values = []

    def walk(d) -> None:  # noqa: ANN001
        for el in d:
            if el.VR == "SQ":
                for item in el.value:
                    walk(item)
            elif el.VR not in ("OB", "OW", "UN"):
                values.append(str(el.value))

    walk(ds)
    texts["report_sr.dcm"] = "\n".join(values)
    return texts


def test_report_in_export_and_clinical_modes(tiny_run, tiny_cohort, tmp_path) -> None:  # noqa: ANN001
    from workbench.data.case import load_cases

    site = tmp_path / "site"
    shutil.copytree(sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())[0], site)
    case = next(c for c in load_cases(site) if c.split == "test" and c.series_dir is not None)
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "workbench.cli", "report", str(tiny_run), case.case_id, "--site", str(site),
           "--out", str(out), "--steps", "4"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["mode"] == "export" and {"report.pdf", "report.html", "report_sr.dcm", "report_fhir.json"} <= set(
        summary["files"])
    texts = _texts(out)
    risk = f"{summary['probability']:.0%}"
    assert risk in texts["report.pdf"] and "Decision support, not a diagnosis" in texts["report.pdf"]
    if shutil.which("pdftotext"):  # poppler's reader too (.ci/run installs poppler-utils)
        text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True, text=True,
                              timeout=60).stdout
        assert f"Estimated malignancy risk: {risk}" in text
    # remapped UIDs are 2.25.<38 random digits>: a 5-digit ZIP code of the truth turns up inside one by chance
    texts = {name: re.sub(r"\b\d+(?:\.\d+){2,}\b", "<uid>", t) for name, t in texts.items()}
    leaks = {name: sorted(s for s in truth_phi(tiny_cohort) if s in t) for name, t in texts.items()}
    assert not any(leaks.values()), leaks
    # the SR's references resolve: its evidence names the remapped source series, the same at every export
    sr = pydicom.dcmread(out / "report_sr.dcm")
    original = pydicom.dcmread(next(p for p in sorted(case.series_dir.iterdir()) if p.is_file()
                                    and not p.name.startswith(".")), stop_before_pixels=True)
    series = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID
    assert series != original.SeriesInstanceUID and sr.StudyInstanceUID != original.StudyInstanceUID
    again = tmp_path / "again"
    assert subprocess.run([*cmd[:-4], "--out", str(again), "--steps", "4", "--format", "sr"], capture_output=True,
                          timeout=600).returncode == 0
    sr2 = pydicom.dcmread(again / "report_sr.dcm")
    assert sr2.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID == series
    # clinical mode keeps the original UIDs and the patient's identifiers
    clinical = tmp_path / "clinical"
    res = subprocess.run([*cmd[:-4], "--out", str(clinical), "--steps", "4", "--clinical"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    sr3 = pydicom.dcmread(clinical / "report_sr.dcm")
    assert sr3.StudyInstanceUID == original.StudyInstanceUID and sr3.PatientID == original.PatientID
    bad = subprocess.run([*cmd[:5], "no-such-case", *cmd[6:]], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no-such-case" in bad.stderr
