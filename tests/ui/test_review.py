"""The case-review screen on the session's tiny RUN, without a browser: which cases it lists, what it shows for
one (risk, gate, CT at the nodule, de-identified note, what-if), switching cases, and that nothing shown is PHI."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from tests.helpers.cohort import truth_phi
from workbench.data.case import load_cases
from workbench.runtime.nodule_card import nodule_card
from workbench.runtime.predict import predict
from workbench.runtime.run import load_run, site_dirs_of
from workbench.ui.review import CaseReview


def shown(review: CaseReview) -> str:
    """Every text the screen shows for the current case."""
    texts = [review.title.value, review.card.value, review.risk.value, review.gate.value, review.similar.value, review.note.value]
    texts += [getattr(c, "value", "") for c in review.what_if_box.children]
    texts += [getattr(c, "value", "") for box in review.what_if_box.children for c in getattr(box, "children", ())]
    return "\n".join(str(t) for t in texts)


def test_the_review_lists_the_split_shows_a_case_and_switches(tiny_run: Path, tiny_cohort: Path) -> None:
    review = CaseReview(tiny_run, tiny_cohort, split="test", steps=2)
    test_cases = [(c, site) for site in site_dirs_of(tiny_cohort) for c in load_cases(site) if c.split == "test"]
    assert len(test_cases) >= 2
    assert [v for _, v in review.browser.select.options] == [c.case_id for c, _ in test_cases]
    assert review.uncertainty is None  # tiny_run is not calibrated: no refer flags, no sets
    first, site = test_cases[0]
    assert f"{first.case_id} ({site.name})" in review.title.value
    model, calibration = load_run(tiny_run)
    p = predict(model, first, calibration=calibration).probability
    assert f"risk {p:.0%}" in review.risk.value and "not calibrated" in review.risk.value
    widths = [int(w) for w in re.findall(r"width:(\d+)px", review.gate.value)]
    assert len(widths) == 2 and abs(sum(widths) - 200) <= 2  # the two gate weights sum to one
    if first.series_dir is not None and first.nodule_lps_mm is not None:
        card = nodule_card(first, [], probability=p)
        assert f"{card['long_axis_mm']:.1f} x {card['short_axis_mm']:.1f} mm" in review.card.value
        assert f"Lung-RADS v2022</td><td>{card['lung_rads']}:" in review.card.value
        assert html.escape(card["recommendation"]) in review.card.value
        assert review.rows[first.case_id]["lung_rads"] == card["lung_rads"]  # the case list's column, once measured
        second = next(c for c, _ in test_cases[1:] if c.series_dir is not None and c.nodule_lps_mm is not None)
        assert review.measure_all(limit=1) == 1  # "measure all" fills the column without opening the case
        label = dict((v, k) for k, v in review.browser.select.options)[second.case_id]
        assert f"Lung-RADS {nodule_card(second, [])['lung_rads']}" in label
        assert review.browser.select.value == first.case_id  # re-labelling kept the open case
        assert review.viewer is not None and review.viewer.slider.value == int(review.viewer.marker[2])
        assert review.viewer.overlay.shape == review.viewer.volume.shape and np.abs(review.viewer.overlay).max() > 0
    if first.note:
        area = review.what_if_box.children[1].text
        assert area.value and area.value != first.note  # the de-identified text, not the raw note
    phi = truth_phi(tiny_cohort)
    leaks = sorted(s for s in phi if s in shown(review))
    assert not leaks, leaks

    other, other_site = test_cases[1]
    review.browser.select.value = other.case_id
    assert f"{other.case_id} ({other_site.name})" in review.title.value
    assert not sorted(s for s in phi if s in shown(review))


def test_an_empty_split_shows_no_case(tiny_run: Path, tiny_cohort: Path) -> None:
    review = CaseReview(tiny_run, tiny_cohort, split="no-such-split", steps=2)
    assert list(review.browser.select.options) == [] and review.viewer is None and review.title.value == ""

