"""The cohort's risk function: published coefficients, one function for every site, known ceilings."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from workbench.bench.cohort_bench import full_preset_truth
from workbench.cohort import risk
from workbench.cohort.ceilings import ceilings
from workbench.cohort.generate import read_truth
from workbench.cohort.sample import sample_site_truths
from workbench.cohort.sites import default_sites
from workbench.cohort.spec import PatientTruth
from workbench.metrics import fit_logistic


def test_brock_matches_a_hand_computed_case() -> None:
    # 70-year-old woman, family history, no emphysema, 15 mm part-solid spiculated upper-lobe nodule, 2 nodules.
    size = (15 / 10) ** -0.5 - 1.58113883
    expected = (-6.7892 + 0.0287 * 8 + 0.6011 + 0.2961 - 5.3854 * size + 0.377 + 0.6581 - 0.0824 * (2 - 4) + 0.7729)
    got = risk.brock_logit(age=70, female=True, family_history=True, emphysema=False, diameter_mm=15,
                           nodule_type="part_solid", upper_lobe=True, nodule_count=2, spiculated=True)
    assert got == pytest.approx(expected, abs=1e-9)
    # Mayo history and prior-CT terms sit on top, with the enrichment shift.
    t = PatientTruth(case_id="x", site="s", split="test", age=70, female=True, family_history=True, smoking="former",
                     pack_years=30, prior_cancer=True, prior_cancer_site="breast", prior_ct="growing",
                     prior_ct_years=1.0, diameter_mm=15, nodule_type="part_solid", spiculated=True, lobe="RUL",
                     nodule_count=2, emphysema=False, emphysema_in_note=False, has_ct=True, has_note=True,
                     logit=0.0, risk=0.0, label=0)
    assert risk.truth_logit(t) == pytest.approx(expected + 0.7917 + 1.3388 + 2.0 + risk.ENRICHMENT_SHIFT, abs=1e-9)
    stable = replace(t, smoking="never", prior_cancer=False, prior_ct="stable_2y")
    assert risk.truth_logit(stable) == pytest.approx(expected - 2.5 + risk.ENRICHMENT_SHIFT, abs=1e-9)
    assert risk.brock_probability(t) == pytest.approx(1 / (1 + math.exp(-expected)), abs=1e-12)


def test_written_truth_follows_the_one_risk_function(tiny_cohort) -> None:
    truths = read_truth(tiny_cohort)
    assert len({t.site for t in truths}) == 3
    for t in truths:
        assert t.logit == pytest.approx(risk.truth_logit(t), abs=1e-5), t.case_id
        assert t.risk == pytest.approx(1 / (1 + math.exp(-t.logit)), abs=1e-5)


def test_risk_function_is_the_same_at_every_site() -> None:
    """Per site, labels regressed on the one true logit give slope ~1 and intercept ~0: no site-specific risk."""
    for i, site in enumerate(default_sites(4)):
        truths = sample_site_truths(site, i, 4000, seed=123)
        y = np.array([t.label for t in truths])
        w = fit_logistic(np.array([[t.logit] for t in truths]), y)
        assert abs(w[0]) < 0.15, (site.name, w)
        assert abs(w[1] - 1.0) < 0.12, (site.name, w)
        assert 0.15 < y.mean() < 0.38, (site.name, y.mean())


def test_sites_differ_in_who_they_see() -> None:
    sites = default_sites(4)
    smokers = [np.mean([t.ever_smoker for t in sample_site_truths(s, i, 1500, 5)]) for i, s in enumerate(sites)]
    assert max(smokers) - min(smokers) > 0.2


def test_full_preset_ceilings_match_the_design() -> None:
    """docs/architecture.md §5: Bayes ~0.89, CT-only ~0.81, notes-only ~0.72; prevalence 20-30%."""
    truths = full_preset_truth(seed=0)
    c = ceilings(truths)
    assert c["bayes"] == pytest.approx(0.89, abs=0.03)
    assert c["ct_only_ceiling"] == pytest.approx(0.81, abs=0.03)
    assert c["notes_only_ceiling"] == pytest.approx(0.72, abs=0.035)
    assert c["ct_only_ceiling"] < c["bayes"] and c["notes_only_ceiling"] < c["bayes"]
    assert 0.20 <= np.mean([t.label for t in truths]) <= 0.30
