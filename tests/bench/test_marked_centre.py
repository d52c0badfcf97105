"""Reader-like nodule marks (workbench/bench/marked_centre.py): the stated error model, measured on many marks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.bench.marked_centre import MarkError, mark_offset, reader_marks
from workbench.data.case import Case


def _case(i: int, ct: bool = True) -> Case:
    return Case(case_id=f"site_{i:05d}", site="site", split="test", series_dir=Path("/nowhere") if ct else None,
                nodule_lps_mm=(10.0, -20.0, -100.0) if ct else None, note="note", label=i % 2)


def test_marks_follow_the_stated_error_model() -> None:
    """2 mm SD per axis for the plain marks; about 10% of marks one radius further, on the radius sphere."""
    diameter = 12.0
    cases = [_case(i) for i in range(4000)]
    marks = reader_marks(cases, {c.case_id: diameter for c in cases})
    offsets = np.array([np.subtract(m.nodule_lps_mm, c.nodule_lps_mm) for m, c in zip(marks, cases, strict=True)])
    off = np.array([mark_offset(c.case_id, diameter)[1] for c in cases])
    assert off.mean() == pytest.approx(0.10, abs=0.015)
    plain = offsets[~off]
    assert plain.mean(0) == pytest.approx([0, 0, 0], abs=0.12)
    assert plain.std(0) == pytest.approx([2.0, 2.0, 2.0], rel=0.05)
    # an off mark = Gaussian error + radius x unit vector: its mean distance is about the radius (6 mm), never 0
    dist = np.linalg.norm(offsets[off], axis=1)
    assert np.median(dist) == pytest.approx(diameter / 2, rel=0.15)
    assert np.median(np.linalg.norm(plain, axis=1)) < 4.0


def test_marks_are_seeded_per_case_and_leave_cases_without_ct_alone() -> None:
    cases = [_case(i) for i in range(50)] + [_case(99, ct=False)]
    diam = {c.case_id: 8.0 for c in cases}
    a = reader_marks(cases, diam)
    assert a == reader_marks(cases, diam)  # a rerun draws the same marks
    assert reader_marks(cases[10:20], diam) == a[10:20]  # a case's mark ignores the other cases
    assert a[-1] == cases[-1]
    assert reader_marks(cases, diam, MarkError(seed=7)) != a
    assert all(m.nodule_lps_mm != c.nodule_lps_mm for m, c in zip(a[:-1], cases[:-1], strict=True))
