"""The risk shown lies inside the interval shown, in every output, on every test case of the tiny cohort, read
back as a reader sees it: the explanation's JSON, the HTML report's rendered text (html.parser), the PDF's text
(pypdf), the DICOM SR's coded measurement and its uncertainty range (pydicom), and the FHIR bundle's Observation
(fhir.resources R4B models). Numbers are compared as printed (rounded), since a clinician reading "risk 8%"
beside "[35%, 38%]" stops trusting the tool (docs/architecture.md §8; data_cards/explanations.md, "One risk,
inside its interval"). Every output must also state the same risk."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pydicom
import pytest

from workbench.data.case import load_cases
from workbench.explain.case import explain_case
from workbench.explain.export import write_explanation
from workbench.report.build import write_report
from workbench.runtime.run import site_dirs_of

UCUM = "http://unitsofmeasure.org"
RISK = re.compile(r"Estimated malignancy risk: (\d+)%")
INTERVAL = re.compile(r"Risk interval: \[(\d+)%, (\d+)%\]")


class _SectionText(HTMLParser):
    """The visible text of each ``<section id=...>`` of a page (entities decoded, tags dropped)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[str]] = {}
        self._current: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._current = dict(attrs).get("id") or ""
            self.sections[self._current] = []
        elif tag in ("style", "script"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._current = None
        elif tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._current is not None and not self._skip:
            self.sections[self._current].append(data)

    def text(self, section: str) -> str:
        return " ".join(" ".join(self.sections[section]).split())


def _printed_pct(p: float) -> int:
    """A probability as the HTML and PDF print it (whole percent)."""
    return int(f"{p:.0%}".rstrip("%"))


def _risk_and_interval(text: str, where: str) -> tuple[int, int, int]:
    risk, interval = RISK.findall(text), INTERVAL.findall(text)
    assert len(risk) == 1 and len(interval) == 1, (where, risk, interval)
    lo, hi = interval[0]
    return int(risk[0]), int(lo), int(hi)


def _sr_risk(path: Path) -> tuple[float, float, float]:
    """(value, lower bound, upper bound) in %: the SR's "Probability of cancer" (DCM 111047) and its TID 310
    uncertainty range (SCT 371885007 below, 371886008 above), each in UCUM %."""
    def walk(items: Any) -> Any:
        for item in items:
            yield item
            yield from walk(getattr(item, "ContentSequence", []))

    ds = pydicom.dcmread(path)
    (prob,) = [i for i in walk(ds.ContentSequence) if i.ValueType == "NUM"
               and i.ConceptNameCodeSequence[0].CodeValue == "111047"]
    value = float(prob.MeasuredValueSequence[0].NumericValue)
    assert prob.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "%"
    ranges = {}
    for child in prob.ContentSequence:
        code = child.ConceptNameCodeSequence[0].CodeValue
        if child.ValueType == "NUM" and code in ("371885007", "371886008"):
            assert child.RelationshipType == "HAS PROPERTIES"
            assert child.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "%"
            ranges[code] = float(child.MeasuredValueSequence[0].NumericValue)
    assert set(ranges) == {"371885007", "371886008"}, "the SR states no interval for its risk"
    return value, round(value - ranges["371885007"], 1), round(value + ranges["371886008"], 1)


def _fhir_risk(path: Path) -> tuple[Decimal, Decimal, Decimal]:
    """(value, lower, upper) in % from the bundle parsed by the R4B models: the malignancy-probability Observation
    and its components coded as the interval's lower and upper bounds, all in UCUM %."""
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.observation import Observation

    bundle = Bundle.model_validate_json(path.read_text(encoding="utf-8"))
    found = [e.resource for e in bundle.entry if isinstance(e.resource, Observation)
             and e.resource.code.coding[0].code == "malignancy-probability"]
    assert len(found) == 1
    obs = found[0]
    quantities = {"value": obs.valueQuantity}
    for c in obs.component or []:
        quantities[c.code.coding[0].code] = c.valueQuantity
    assert set(quantities) == {"value", "malignancy-probability-lower", "malignancy-probability-upper"}, \
        "the FHIR Observation states no interval for its risk"
    for q in quantities.values():
        assert (q.system, q.code, q.unit) == (UCUM, "%", "%")
    return (quantities["value"].value, quantities["malignancy-probability-lower"].value,
            quantities["malignancy-probability-upper"].value)


def test_every_output_shows_a_risk_inside_the_interval_it_shows(tiny_calibrated_run: Path, tiny_cohort: Path,
                                                                tmp_path: Path) -> None:
    run = tiny_calibrated_run
    expected = [c.case_id for s in site_dirs_of(tiny_cohort) for c in load_cases(s) if c.split == "test"]
    checked = []
    for site in site_dirs_of(tiny_cohort):
        for case in (c for c in load_cases(site) if c.split == "test"):
            cid = case.case_id
            ce = explain_case(run, cid, site, steps=2)  # the fewest IG steps: only the risk is checked here
            assert ce.assessment is not None
            write_explanation(ce, tmp_path / "exp" / cid)
            js = json.loads((tmp_path / "exp" / cid / "explanation.json").read_text(encoding="utf-8"))
            p, u = js["probability"], js["uncertainty"]
            lo, hi = u["interval"]
            assert lo <= p <= hi, (cid, "explanation.json", p, lo, hi)
            assert p == u["probability"]  # one risk, the assessment's
            if u["interval_calib_cases"]:  # a calibration with its bootstrap interval
                assert u["risk_method"].startswith("calibrated risk (Platt scaling on")
            else:  # too few cases to calibrate (the tiny cohort's val and calib are 6 benign cases): it says so
                assert (lo, hi) == (0.0, 1.0) and "no interval" in u["risk_method"]

            out = tmp_path / "reports" / cid
            write_report(run, cid, site, out, formats=("pdf", "html", "sr", "fhir"), explanation=ce)
            page = _SectionText()
            page.feed((out / "report.html").read_text(encoding="utf-8"))
            r, lo_h, hi_h = _risk_and_interval(page.text("risk"), f"{cid} HTML")
            assert lo_h <= r <= hi_h, (cid, "HTML", r, lo_h, hi_h)
            assert r == _printed_pct(p) and (lo_h, hi_h) == (_printed_pct(lo), _printed_pct(hi))
            assert f"estimated malignancy risk {r}%" in page.text("finding")  # the finding line: the same risk

            from pypdf import PdfReader

            pdf_text = " ".join((pg.extract_text() or "") for pg in PdfReader(out / "report.pdf").pages)
            assert _risk_and_interval(" ".join(pdf_text.split()), f"{cid} PDF") == (r, lo_h, hi_h)

            if case.series_dir is not None:
                v, lo_s, hi_s = _sr_risk(out / "report_sr.dcm")
                assert lo_s <= v <= hi_s, (cid, "SR", v, lo_s, hi_s)
                assert v == round(100 * p, 1) and (lo_s, hi_s) == (round(100 * lo, 1), round(100 * hi, 1))
            else:
                assert not (out / "report_sr.dcm").exists()  # no CT series, no SR (the report notes says so)

            v_f, lo_f, hi_f = _fhir_risk(out / "report_fhir.json")
            assert lo_f <= v_f <= hi_f, (cid, "FHIR", v_f, lo_f, hi_f)
            assert float(v_f) == pytest.approx(round(100 * p, 1)) and float(lo_f) == pytest.approx(round(100 * lo, 1))
            assert float(hi_f) == pytest.approx(round(100 * hi, 1))
            checked.append(cid)
    assert checked == expected and len(checked) >= 5
