"""What the PHI scan makes to search, besides the federation (``phi_federation``): reports in export mode, the node
service's files for a few studies, and the notebooks executed headless. Every server binds 127.0.0.1 and is stopped
by its PID; every process's output is kept in a log file under ``work``, which is scanned too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.jsonout import write_json

NOTEBOOKS = Path(__file__).resolve().parents[3] / "notebooks"
NOTEBOOK_NAMES = ("01_cohort.ipynb", "02_federated_training.ipynb", "03_case_review.ipynb", "04_reports.ipynb")
NEW_STUDY_NOTEBOOK = "05_new_study.ipynb"


def ct_cases(cohort: Path, n: int, *, site: str | None = None) -> list[Any]:
    """``n`` CT cases with a nodule, test split first, taking the sites in turn (or of ``site`` alone): the
    reports' and the service's studies."""
    from workbench.data.case import load_cases
    from workbench.runtime.run import site_dirs_of

    groups = [sorted((c for c in load_cases(s) if c.series_dir is not None and c.nodule_lps_mm),
                     key=lambda c: c.split != "test") for s in site_dirs_of(cohort) if site in (None, s.name)]
    ordered = [c for row in zip(*groups, strict=False) for c in row]
    if len(ordered) < n:
        raise WorkbenchError(f"phi_scan: {cohort} has {len(ordered)} CT cases with a nodule, {n} asked for")
    return ordered[:n]


def export_reports(run: Path, cohort: Path, out: Path, n: int, steps: int) -> dict[str, Any]:
    """``workbench report`` (export mode, the default) for ``n`` cases, each in its own process, output logged."""
    done = []
    for case in ct_cases(cohort, n):
        dst = out / case.case_id
        if (dst / "summary.json").is_file():
            done.append(case.case_id)
            continue
        cmd = [sys.executable, "-m", "workbench.cli", "report", str(run), case.case_id, "--site",
               str(cohort / case.site), "--out", str(dst), "--steps", str(steps)]
        dst.mkdir(parents=True, exist_ok=True)
        with open(out / f"{case.case_id}.log", "wb") as log:
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, timeout=900)
        if res.returncode != 0:
            raise WorkbenchError(f"phi_scan: workbench report {case.case_id} failed: see {out / f'{case.case_id}.log'}")
        summary = json.loads(res.stdout)
        if summary.get("mode") != "export":
            raise WorkbenchError(f"phi_scan: workbench report wrote {summary.get('mode')!r} mode, export expected")
        write_json(dst / "summary.json", summary)  # the command's stdout, scanned with the files
        done.append(case.case_id)
    return {"cases": done}


def service_studies(run: Path, cohort: Path, out: Path, n: int, steps: int, timeout_s: float = 600.0) -> dict[str, Any]:
    """``n`` studies (CT, the radiologist's mark, the note by accession number) sent by an Orthanc on loopback to
    ``workbench serve``, until each is done or quarantined; the service is then stopped by its PID."""
    import shutil

    from workbench.bench.serve_bench import service_rig
    from workbench.service.inbox import folder_counts
    from workbench.service.pacs_sandbox import available

    why = available()
    if why:
        return {"skipped": f"no PACS sandbox on this machine: {why}"}
    if (out / "done.json").is_file():
        return json.loads((out / "done.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    cases = ct_cases(cohort, n, site=ct_cases(cohort, 1)[0].site)  # one node: one site's studies
    with service_rig(out, run, cases, steps=steps, quiet_s=2.0) as rig:
        node, pacs, studies, serve = rig.node, rig.pacs, rig.studies, rig.serve
        try:
            serve.start()
            pacs.send("workbench", studies, 600)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                c = folder_counts(node / "service")
                if c["done"] + c["quarantine"] >= len(studies) or not serve.running():
                    break
                time.sleep(1.0)
        finally:
            serve.stop()
    c = folder_counts(node / "service")
    result = {"studies": len(studies), "done": c["done"], "quarantined": c["quarantine"],
              "quarantine_reasons": [json.loads((q / "reason.json").read_text())["reason"]
                                     for q in sorted((node / "service" / "quarantine").iterdir())]}
    write_json(out / "done.json", result)
    return result


def execute_notebooks(run: Path, cohort: Path, out: Path, steps: int) -> dict[str, Any]:
    """The notebooks the notebook test runs, executed headless (nbclient, a real kernel) and saved with their
    outputs into ``out``; 05 against an Orthanc on loopback holding one study with its radiologist's mark."""
    out.mkdir(parents=True, exist_ok=True)
    env = {"WORKBENCH_COHORT": str(cohort), "WORKBENCH_RUN": str(run), "WORKBENCH_STEPS": str(steps),
           "WORKBENCH_REPORTS_OUT": str(out / "reports")}
    ran = [name for name in NOTEBOOK_NAMES if _execute(name, env, out)]
    from workbench.service.pacs_sandbox import OrthancSandbox, available

    if available() is None and not (out / NEW_STUDY_NOTEBOOK).is_file():
        from workbench.runtime.study import write_point_mark

        case = ct_cases(cohort, 1)[0]
        files = sorted(p for p in Path(case.series_dir).iterdir() if p.is_file() and not p.name.startswith("."))
        mark = write_point_mark(files[0], case.nodule_lps_mm, out / "mark.dcm")
        with OrthancSandbox(out / "pacs") as pacs:
            for f in [*files, mark]:
                pacs.upload(f)
            _execute(NEW_STUDY_NOTEBOOK, {
                "WORKBENCH_PACS_URL": pacs.url, "WORKBENCH_PACS_AET": pacs.aet, "WORKBENCH_PACS_HOST": "127.0.0.1",
                "WORKBENCH_PACS_DICOM_PORT": str(pacs.dicom_port), "WORKBENCH_RUN": str(run),
                "WORKBENCH_COHORT": str(cohort), "WORKBENCH_SITE": case.site,
                "WORKBENCH_NODE_DIR": str(out / "node"), "WORKBENCH_STEPS": str(steps)}, out)
    if (out / NEW_STUDY_NOTEBOOK).is_file():
        ran.append(NEW_STUDY_NOTEBOOK)
    return {"notebooks": ran}


def _execute(name: str, env: dict[str, str], out: Path) -> bool:
    """One notebook run headless and written to ``out`` with its outputs (kept: a later run skips it)."""
    import nbformat
    from nbclient import NotebookClient

    if (out / name).is_file():
        return True
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits the environment: that is how a notebook finds its run
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    nbformat.write(nb, str(out / name))
    return True


__all__ = ["ct_cases", "execute_notebooks", "export_reports", "service_studies"]
