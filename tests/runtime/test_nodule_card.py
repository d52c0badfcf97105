"""The report's nodule size, type, lobe and Lung-RADS category come from the CT measurement at the marked centre
(``workbench.runtime.nodule_card.measured_nodule`` over ``workbench.runtime.measure``), checked against the tiny cohort's
generator truth; a case without a usable mark gets no size and a note saying why, never a wrong one."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from workbench.data.case import load_cases
from workbench.runtime.nodule_card import measured_nodule


def _lung_rads_solid(mean_mm: float) -> str:
    """ACR Lung-RADS v2022, solid nodule at baseline, written out here from the table (independent of guidelines.py)."""
    return "2" if mean_mm < 6 else "3" if mean_mm < 8 else "4A" if mean_mm < 15 else "4B"


def test_the_reports_size_type_and_lobe_match_the_generator(tiny_cohort) -> None:  # noqa: ANN001
    truth = {json.loads(line)["case_id"]: json.loads(line)
             for line in (tiny_cohort / "truth.jsonl").read_text().splitlines() if line.strip()}
    cases = [c for site in sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())
             for c in load_cases(site) if c.has_ct and c.split == "test"]
    errors, types, lobes = [], [], []
    for case in cases:
        notes: list[str] = []
        m = measured_nodule(case, notes)
        t = truth[case.case_id]
        assert m, (case.case_id, notes)
        assert m["long_axis_mm"] >= m["short_axis_mm"] > 0 and m["volume_mm3"] > 0
        assert abs(m["mean_diameter_mm"] - (m["long_axis_mm"] + m["short_axis_mm"]) / 2) <= 0.051
        errors.append(abs(m["mean_diameter_mm"] - t["diameter_mm"]))
        types.append(m["nodule_type"] == t["nodule_type"])
        lobes.append(m["lobe"] == t["lobe"])
        if m["nodule_type"] == "solid":
            assert m["lung_rads"] == _lung_rads_solid(m["mean_diameter_mm"]), (case.case_id, m)
            assert m["solid_component_mm"] is None
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
