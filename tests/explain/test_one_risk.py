"""One coherent risk: on every test case of the tiny cohort the risk each output states lies inside the interval
it states, in the explanation's JSON, the HTML report and the FHIR bundle (a clinician reading "risk 8%" beside
"[35%, 38%]" stops trusting the tool)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from workbench.data.case import load_cases
from workbench.explain.case import explain_case
from workbench.explain.export import write_explanation
from workbench.report.build import write_report
from workbench.runtime.run import site_dirs_of
from workbench.runtime.run_uncertainty import calibrate_run


def _fhir_risk(bundle: dict) -> tuple[float, float, float]:
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)  # a real FHIR reader accepts it
    for entry in bundle["entry"]:
        r = entry["resource"]
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "malignancy-probability":
            lo, hi = (c["valueQuantity"]["value"] for c in r["component"])
            return float(r["valueQuantity"]["value"]), float(lo), float(hi)
    raise AssertionError("no malignancy-probability Observation")


def test_every_stated_risk_lies_inside_its_stated_interval(tiny_run: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    calibrate_run(run, tiny_cohort, progress=False)
    checked = 0
    for site in site_dirs_of(tiny_cohort):
        for case in (c for c in load_cases(site) if c.split == "test"):
            ce = explain_case(run, case.case_id, site, steps=4)
            assert ce.assessment is not None
            summary = write_explanation(ce, tmp_path / "exp" / case.case_id)
            lo, hi = summary["uncertainty"]["interval"]
            assert lo <= summary["probability"] <= hi, (case.case_id, summary["probability"], lo, hi)
            if summary["uncertainty"]["interval_calib_cases"]:
                assert summary["uncertainty"]["risk_method"] == "Venn-Abers point estimate"

            out = tmp_path / "reports" / case.case_id
            write_report(run, case.case_id, site, out, formats=("html", "fhir"), explanation=ce)
            html = (out / "report.html").read_text(encoding="utf-8")
            risk = int(re.search(r"Estimated malignancy risk: (\d+)%", html).group(1))
            lo_h, hi_h = (int(v) for v in re.search(r"Interval: \[(\d+)%, (\d+)%\]", html).groups())
            assert lo_h <= risk <= hi_h, (case.case_id, risk, lo_h, hi_h)

            value, lo_f, hi_f = _fhir_risk(json.loads((out / "report_fhir.json").read_text(encoding="utf-8")))
            assert lo_f <= value <= hi_f, (case.case_id, value, lo_f, hi_f)
            checked += 1
    assert checked >= 5
