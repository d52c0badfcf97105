"""The notebooks execute headless on the tiny cohort (nbclient, a real kernel), and show no PHI; 05 against a real
Orthanc on 127.0.0.1 holding one tiny-cohort study with its radiologist's mark."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from workbench.service import pacs_sandbox

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01_cohort.ipynb", "02_federated_training.ipynb", "03_case_review.ipynb", "04_reports.ipynb")


def _execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits the environment: that is how a notebook finds its run
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def _stream(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_the_four_notebooks_run_headless_and_show_no_phi(calibrated_run, tiny_cohort, tmp_path) -> None:  # noqa: ANN001
    env = {"WORKBENCH_COHORT": str(tiny_cohort), "WORKBENCH_RUN": str(calibrated_run), "WORKBENCH_STEPS": "4",
           "WORKBENCH_REPORTS_OUT": str(tmp_path / "reports")}
    done = {name: _execute(name, env) for name in NAMES}
    assert "hospital_a" in _stream(done["01_cohort.ipynb"]) and "spacing (mm)" in _stream(done["01_cohort.ipynb"])
    review = _stream(done["03_case_review.ipynb"])
    assert "cases listed:" in review and "image changed: True" in review
    assert "references series 2.25." in _stream(done["04_reports.ipynb"])
    assert (tmp_path / "reports").is_dir()
    _assert_no_phi(done, tiny_cohort)


def _assert_no_phi(done: dict[str, nbformat.NotebookNode], cohort: Path) -> None:
    from tests.helpers.cohort import phi_in, truth_phi

    phi = truth_phi(cohort)
    for name, nb in done.items():
        text = json.dumps(nb)  # outputs and the saved widget state
        text = re.sub(r"[A-Za-z0-9+/=\n\\]{200,}", "<base64>", text)  # images are pixels, not text
        text = re.sub(r"\b\d+(?:\.\d+){2,}\b", "<uid>", text)  # remapped UIDs hold random digits
        leaks = phi_in(phi, text)  # whole tokens: a ZIP's digits also turn up inside a float
        assert not leaks, (name, leaks)


@pytest.mark.skipif(pacs_sandbox.available() is not None, reason=str(pacs_sandbox.available()))
def test_the_new_study_notebook_scores_a_pacs_study_at_its_mark_and_files_its_sr_in_the_pacs(
        calibrated_run, tiny_cohort, tmp_path) -> None:  # noqa: ANN001
    """05 headless: the study in Orthanc is listed, opened, scored at the radiologist's mark (no clicks) with the
    risk ``workbench predict`` gives for the same files; the send cell leaves exactly one workbench SR in that study;
    no PHI in the saved notebook (identifiers are not shown unless asked for, and no note is given here)."""
    import pydicom

    from tests.helpers.studies import ct_files, mark_for
    from workbench.data.case import find_site_case
    from workbench.report.study import StudyRequest, predict_study
    from workbench.service.pacs_sandbox import OrthancSandbox

    case = find_site_case(tiny_cohort / "hospital_a", "hospital_a_0000")
    mark = mark_for(case, tmp_path / "mark.dcm")
    with OrthancSandbox(tmp_path / "pacs") as pacs:
        for f in [*ct_files(case), mark]:
            study = pacs.upload(f)["ParentStudy"]
        env = {"WORKBENCH_PACS_URL": pacs.url, "WORKBENCH_PACS_AET": pacs.aet, "WORKBENCH_PACS_HOST": "127.0.0.1",
               "WORKBENCH_PACS_DICOM_PORT": str(pacs.dicom_port), "WORKBENCH_RUN": str(calibrated_run),
               "WORKBENCH_COHORT": str(tiny_cohort), "WORKBENCH_SITE": "hospital_a",
               "WORKBENCH_NODE_DIR": str(tmp_path / "node"), "WORKBENCH_STEPS": "4"}
        nb = _execute("05_new_study.ipynb", env)
        srs = []
        (tmp_path / "srs").mkdir()
        for inst in pacs.instances_of(study, "SR"):
            ds = pydicom.dcmread(pacs.download(inst["ID"], tmp_path / "srs" / f"{inst['ID']}.dcm"))
            if str(ds.get("Manufacturer", "")).startswith("nodule-workbench"):
                srs.append(ds)
        pacs.download_study(study, tmp_path / "from_pacs")
    out = _stream(nb)
    risk = re.search(r"^risk (\d+\.\d)% interval", out, flags=re.M)
    assert risk, out
    assert "workbench SRs now in the study: 1" in out, out
    assert len(srs) == 1 and srs[0].StudyInstanceUID == pydicom.dcmread(ct_files(case)[0]).StudyInstanceUID
    expected = predict_study(StudyRequest(calibrated_run, tmp_path / "from_pacs", nodule_from=mark, site="hospital_a",
                                          node_dir=tmp_path / "node"))
    assert risk.group(1) == f"{100 * expected['probability']:.1f}", (risk.group(1), expected["probability"])
    _assert_no_phi({"05_new_study.ipynb": nb}, tiny_cohort)
