"""The calibration sweep (``workbench.bench.calibration_sweep``): its error against the true risk is right on known
numbers, its records are val-only, and on sites that share one truth the pooled calibration it chose is the better
calibrated."""

from __future__ import annotations

import numpy as np

from tests.bench.test_sweeps_hold_no_test import problems
from workbench.bench.calibration_sweep import Cases, choice, ece_vs_risk, sweep


def test_the_error_against_the_true_risk_has_no_label_noise() -> None:
    r = np.linspace(0.05, 0.85, 400)
    assert ece_vs_risk(r, r) == 0.0
    assert abs(ece_vs_risk(r, r + 0.1) - 0.1) < 1e-9


def _cases(n_per_site: int = 116) -> Cases:
    """Two sites of one truth; the model's logit is the true log-odds, over-confident by a factor 1.6 (the same
    map at both sites, as under the ``brock`` truth), about 30% malignant."""
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-1.2, 1.3, 2 * n_per_site)
    risk = 1 / (1 + np.exp(-true_logit))
    labels = (rng.random(len(risk)) < risk).astype(float)
    sites = np.repeat(["site_a", "site_b"], n_per_site)
    return Cases(sites, labels, risk, {0: 1.6 * true_logit, 1: 1.6 * true_logit + rng.normal(0, 0.2, len(risk))})


def test_records_are_val_only_and_a_shared_truth_prefers_the_pooled_fit() -> None:
    designs = {"own from 30": {"min_val_own": 30, "min_val_own_per_class": 8, "stated_risk": "venn_abers"},
               "own from 150": {"min_val_own": 150, "min_val_own_per_class": 30, "stated_risk": "venn_abers"}}
    records = sweep(_cases(), partitions=2, designs=designs)
    assert [r["design"] for r in records] == list(designs)
    for r in records:
        assert problems(r) == [], r
        assert r["cases_per_site"] == {"site_a": 116, "site_b": 116} and r["seeds"] == [0, 1]
        assert all(0.0 < v < 0.2 for v in r["ece_vs_true_risk_per_site"].values())
    # same calibration map at both sites: each site's own Platt on ~46 cases only adds variance
    assert choice(records)["design"] == "own from 150"


def test_the_smooth_stated_risk_has_no_ties_and_its_interval_holds_the_true_risk_more_often_than_venn_abers() -> None:
    designs = {"venn-abers": {"stated_risk": "venn_abers"},
               "smooth": {"stated_risk": "platt", "stated_fit": "val+calib"}}
    va, smooth = sweep(_cases(), partitions=2, designs=designs)
    assert va["stated_risk_ties"] > 0.3  # a step function: most stated risks shared with another case
    assert smooth["stated_risk_ties"] == 0.0
    assert smooth["true_risk_inside_interval"] > 0.6
    assert smooth["worst_site_ece_vs_true_risk"] < 0.1


def test_training_cases_in_the_fit_help_when_the_model_did_not_overfit_them_and_are_never_scored() -> None:
    """Few held-out labels, 25 times as many training labels from the same truth: reading them calibrates
    closer to the true risk; the scored cases stay the val and calib ones."""
    rng = np.random.default_rng(1)
    cases = _cases(60)
    n_train = 3000
    t_logit = rng.normal(-1.2, 1.3, n_train)
    cases.train_sites = np.repeat(["site_a", "site_b"], n_train // 2)
    cases.train_labels = (rng.random(n_train) < 1 / (1 + np.exp(-t_logit))).astype(float)
    cases.train_logits = {0: 1.6 * t_logit, 1: 1.6 * t_logit + rng.normal(0, 0.2, n_train)}
    designs = {"held out": {"stated_risk": "platt", "stated_fit": "val+calib"},
               "with train": {"stated_risk": "platt", "stated_fit": "train+val+calib", "stated_min_own": 0}}
    held, with_train = sweep(cases, partitions=3, designs=designs)
    assert with_train["cases_per_site"] == {"site_a": 60, "site_b": 60}
    assert "train cases in every fit" in with_train["cases"] and problems(with_train) == []
    assert with_train["worst_site_ece_vs_true_risk"] < held["worst_site_ece_vs_true_risk"]
