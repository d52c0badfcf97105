"""The report's nodule size, type, lobe and Lung-RADS category come from the CT measurement at the marked centre
(``workbench.runtime.nodule_card.measured_nodule`` over ``workbench.runtime.measure``), checked against the tiny cohort's
generator truth; a case without a usable mark gets no size and a note saying why, never a wrong one."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from workbench.data.case import load_cases
from workbench.runtime.nodule_card import measured_nodule, nodule_card


def _lung_rads_solid(mean_mm: float) -> str:
    """ACR Lung-RADS v2022, solid nodule at baseline, written out here from the table (independent of guidelines.py)."""
    return "2" if mean_mm < 6 else "3" if mean_mm < 8 else "4A" if mean_mm < 15 else "4B"


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _generator_brock(t: dict) -> float:
    from workbench.cohort.risk import brock_logit

    return float(1 / (1 + np.exp(-brock_logit(age=t["age"], female=t["female"], family_history=t["family_history"],
                                              emphysema=t["emphysema"], diameter_mm=t["diameter_mm"],
                                              nodule_type=t["nodule_type"], upper_lobe=t["lobe"] in ("RUL", "LUL"),
                                              nodule_count=t["nodule_count"], spiculated=t["spiculated"]))))


def test_the_reports_size_type_and_lobe_match_the_generator(tiny_cohort) -> None:  # noqa: ANN001
    truth = {json.loads(line)["case_id"]: json.loads(line)
             for line in (tiny_cohort / "truth.jsonl").read_text().splitlines() if line.strip()}
    cases = [c for site in sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())
             for c in load_cases(site) if c.has_ct and c.split == "test"]
    errors, types, lobes = [], [], []
    for case in cases:
        notes: list[str] = []
        m = nodule_card(case, notes, probability=0.5)
        t = truth[case.case_id]
        assert m, (case.case_id, notes)
        assert m["long_axis_mm"] >= m["short_axis_mm"] > 0 and m["volume_mm3"] > 0
        assert abs(m["mean_diameter_mm"] - (m["long_axis_mm"] + m["short_axis_mm"]) / 2) <= 0.051
        errors.append(abs(m["mean_diameter_mm"] - t["diameter_mm"]))
        types.append(m["nodule_type"] == t["nodule_type"])
        lobes.append(m["lobe"] == t["lobe"])
        if m["nodule_type"] == "solid" and m["lung_rads_status"] == "baseline" and not m["spiculated"]:
            assert m["lung_rads"] == _lung_rads_solid(m["mean_diameter_mm"]), (case.case_id, m)
        if m["nodule_type"] == "solid":
            assert m["solid_component_mm"] is None
        assert m["emphysema"] == t["emphysema"], case.case_id  # LAA-950 separates the phantoms' emphysema cleanly
        assert m["recommendation"].startswith(("Fleischner 2017: ", "BTS 2015: ")), m["recommendation"]
        assert m["fleischner_applies"] == (not t["prior_cancer"] and t["age"] >= 35), (case.case_id, m)
        if t["has_note"] and m["brock_risk"] is not None and m["note_facts"]["family_history"] is not None:
            # the card's Brock, from the measured nodule and the note's facts, next to the generator's own Brock of the
            # true patient: they agree when the measurement read type, lobe and margin as the generator drew them
            same = (m["nodule_type"] == t["nodule_type"] and (m["lobe"] in ("RUL", "LUL")) == (t["lobe"] in ("RUL", "LUL"))
                    and m["spiculated"] == t["spiculated"] and t["nodule_count"] == 1)
            if same:
                ours = _logit(m["brock_risk"])
                theirs = _logit(_generator_brock(t))
                assert abs(ours - theirs) < 0.35, (case.case_id, m["brock_risk"], _generator_brock(t))
        assert any(n.startswith("size: measured from the CT") for n in notes)
    assert len(errors) >= 4
    assert float(np.median(errors)) <= 1.0, errors
    assert np.mean(types) >= 0.75 and np.mean(lobes) >= 0.75, (types, lobes)


def test_a_case_without_a_mark_gets_no_size_and_a_reason(tiny_cohort) -> None:  # noqa: ANN001
    site = next(p for p in sorted(tiny_cohort.iterdir()) if (p / "manifest.csv").exists())
    case = next(c for c in load_cases(site) if c.has_ct)
    notes: list[str] = []
    assert measured_nodule(dataclasses.replace(case, nodule_lps_mm=None), notes) == {}
    assert notes == ["size: not measured (no CT series or no nodule mark)"]
    far = dataclasses.replace(case, nodule_lps_mm=(5000.0, 5000.0, 5000.0))  # outside the volume
    assert measured_nodule(far, notes) == {}
    assert notes[-1].startswith("size: not measured (") and case.case_id in notes[-1]
