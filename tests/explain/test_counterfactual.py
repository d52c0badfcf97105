"""Counterfactual note edits (issue 17's clinical plausibility check): the facts are found in every note style,
each edit adds or removes exactly its fact in natural, identifier-free text, the what-if direction flag, and the
direction rate over seeds on known numbers."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pytest

from workbench.bench.explain_seeds import counterfactual_over_seeds
from workbench.cohort.identity import make_identity
from workbench.cohort.notes import EVAL_STYLE, SITE_STYLES, write_note
from workbench.cohort.sample import sample_truth
from workbench.cohort.sites import default_sites
from workbench.data.deid import deidentify
from workbench.explain import counterfactual as CF

STYLES = (*SITE_STYLES, EVAL_STYLE)


def _notes(n: int = 12) -> list[tuple[str, object, str]]:
    out = []
    for i in range(n):
        for style in STYLES:
            rng = np.random.default_rng([17, i])
            site = default_sites(4)[i % 4]
            truth = sample_truth(site, f"t{i}", rng)
            ident = make_identity(rng, site, age=truth.age, female=truth.female,
                                  visit_date=date(2020, 1, 1) + np.timedelta64(int(rng.integers(0, 1500)), "D").item())
            if truth.has_note:
                out.append((style, truth, write_note(truth, ident, style, rng).text))
    return out


@pytest.fixture(scope="module")
def notes() -> list[tuple[str, object, str]]:
    return _notes()


def test_facts_are_read_from_every_style(notes: list[tuple[str, object, str]]) -> None:
    assert {s for s, _, _ in notes} == set(STYLES)
    for style, t, text in notes:
        assert CF.smoking_status(text) == t.smoking, (style, text)
        assert CF.has_factor(text, "family_history") == t.family_history, (style, text)
        assert CF.has_factor(text, "prior_cancer") == t.prior_cancer, (style, text)


def test_each_edit_flips_its_fact_only_and_adds_no_identifier(notes: list[tuple[str, object, str]]) -> None:
    applied = {(f, a): 0 for f in CF.FACTORS for a in CF.ACTIONS}
    tag = re.compile(r"\[[A-Z_]+\]")
    for style, t, text in notes:
        before = CF.factors(text)
        for e in CF.note_edits(text):
            if e.text is None:
                # only the edit that does not apply is skipped: adding a present fact, removing an absent one,
                # and a former smoker (not edited)
                assert before[e.factor] == (e.action == "add") or (e.factor == "smoking" and t.smoking == "former")
                continue
            applied[e.factor, e.action] += 1
            after = CF.factors(e.text)
            assert after[e.factor] == (e.action == "add"), (style, e, e.text)
            assert {f: v for f, v in after.items() if f != e.factor} == \
                   {f: v for f, v in before.items() if f != e.factor}, (style, e.factor, e.text)
            if e.factor == "smoking":
                assert CF.smoking_status(e.text) == ("current" if e.action == "add" else "never")
                if e.action == "remove":
                    assert "cessation" not in e.text and "stop smoking" not in e.text
            # the edit writes no identifier: de-identification finds exactly as many as in the original
            assert len(tag.findall(deidentify(e.text))) == len(tag.findall(deidentify(text))), (style, e.text)
    assert all(v > 0 for v in applied.values()), applied


def test_edits_read_as_the_note_writes() -> None:
    narrative = ("He is a never smoker. There is no family history of lung cancer. His past history includes "
                 "gout. He denies prior malignancy. Medications: aspirin 81 mg daily.")
    assert CF.edit_note(narrative, "smoking", "add").startswith(
        "He is a current smoker with a 30 pack-year history. There is no family")
    assert "There is a family history of lung cancer in his mother." in CF.edit_note(narrative, "family_history", "add")
    assert "He had colon cancer treated with hemicolectomy." in CF.edit_note(narrative, "prior_cancer", "add")
    assert "He had lung cancer treated with right upper lobectomy." in CF.add_prior_lung_cancer(narrative)
    dated = narrative.replace("Medications:", "Seen 03/2019. Medications:")
    assert "He had colon cancer in 2011 treated with hemicolectomy." in CF.edit_note(dated, "prior_cancer", "add")
    assert CF.has_factor(CF.add_prior_lung_cancer(dated), "prior_cancer")
    terse = "HPI: 61 yo M w/ incid pulm nodule. curr smoker, 1.5 ppd x 10 yrs. Denies cough.\nFH: noncontrib"
    out = CF.edit_note(terse, "smoking", "remove")
    assert "never smoker. Denies cough." in out and "ppd" not in out
    with pytest.raises(CF.NotApplicable):
        CF.edit_note(terse, "smoking", "add")
    with pytest.raises(CF.NotApplicable):
        CF.edit_note(terse, "family_history", "remove")


def test_direction_flag() -> None:
    never = "She is a never smoker. No family history of lung cancer. She denies prior malignancy."
    current = CF.edit_note(never, "smoking", "add")
    family = CF.edit_note(never, "family_history", "add")
    msg = CF.direction_flag(never, current, 0.11, 0.08)
    assert msg is not None and "current smoker" in msg and "11%" in msg and "8%" in msg and "raise" in msg
    assert CF.direction_flag(never, current, 0.11, 0.13) is None  # moved as published
    assert CF.direction_flag(never, current, 0.11, 0.11) is None  # did not move the other way
    assert "lower" in (CF.direction_flag(current, never, 0.11, 0.13) or "")  # the "never smoked" 11% -> 13%
    assert "family history" in (CF.direction_flag(never, family, 0.2, 0.1) or "")
    assert CF.direction_flag(never, never + " Lives alone.", 0.2, 0.1) is None  # no risk factor changed
    mixed = CF.edit_note(current, "family_history", "add").replace("current smoker with a 30 pack-year history",
                                                                     "never smoker")
    assert CF.has_factor(mixed, "family_history") and CF.smoking_status(mixed) == "never"
    assert CF.direction_flag(current, mixed, 0.2, 0.1) is None  # one factor up, one down: no published direction


def test_direction_rate_on_known_numbers() -> None:
    assert CF.moved_as_published(0.1, 0.2, +1) and not CF.moved_as_published(0.1, 0.1, +1)
    assert CF.moved_as_published(0.3, 0.2, -1) and not CF.moved_as_published(0.2, 0.2, -1)
    assert CF.direction_rate([0.1, 0.1, 0.5, 0.5], [0.2, 0.1, 0.4, 0.6], [1, 1, -1, -1]) == 0.5
    ids = ["a", "a", "b", "c"]
    names = ["smoking_add", "family_history_add", "smoking_remove", "prior_cancer_add"]
    expected = np.array([1, 1, -1, 1])
    before = [np.array([0.1, 0.1, 0.5, 0.2]), np.array([0.1, 0.1, 0.5, 0.2])]
    after = [np.array([0.2, 0.1, 0.4, 0.3]),  # seed 0: 3 of 4 (the unchanged one is not a move)
             np.array([0.2, 0.2, 0.6, 0.1])]  # seed 1: 2 of 4
    out = counterfactual_over_seeds(ids, names, expected, before, after,
                                    kinds={"smoking": ["smoking_add", "smoking_remove"]})
    assert out["counterfactual_direction_rate"] == pytest.approx(0.625)
    assert out["counterfactual_direction_rate_by_seed"] == [0.75, 0.5]
    lo, hi = out["counterfactual_direction_rate_ci95"]
    assert 0.0 <= lo <= 0.625 <= hi <= 1.0 and hi > lo
    assert out["counterfactual_direction_rate_by_edit"]["smoking_remove"] == pytest.approx(0.5)
    assert out["counterfactual_direction_rate_by_edit"]["family_history_add"] == pytest.approx(0.5)
    assert out["counterfactual_direction_rate_by_factor"]["smoking"] == pytest.approx(0.75)
    assert out["counterfactual_unchanged_share"] == pytest.approx(0.125)
    assert out["counterfactual_n_cases"] == 3 and out["counterfactual_n_edits"]["smoking_add"] == 1
    assert out["counterfactual_within_target"] is False and out["n_seeds"] == 2
    perfect = counterfactual_over_seeds(ids, names, expected, before,
                                        [np.array([0.2, 0.2, 0.4, 0.3])] * 2)
    assert perfect["counterfactual_direction_rate"] == 1.0 and perfect["counterfactual_direction_rate_ci95"] == [1.0, 1.0]
