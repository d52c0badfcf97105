"""The four notebooks execute headless on the tiny cohort (nbclient, a real kernel), and show no PHI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

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
    from tests.helpers.cohort import truth_phi

    phi = truth_phi(tiny_cohort)
    for name, nb in done.items():
        text = json.dumps(nb)  # outputs and the saved widget state
        text = re.sub(r"[A-Za-z0-9+/=\n\\]{200,}", "<base64>", text)  # images are pixels, not text
        text = re.sub(r"\b\d+(?:\.\d+){2,}\b", "<uid>", text)  # remapped UIDs hold random digits
        leaks = sorted(s for s in phi if s in text)
        assert not leaks, (name, leaks)
