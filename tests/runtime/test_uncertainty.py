"""Conformal sets and Venn-Abers intervals against data whose true risk is known."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.runtime.uncertainty import MondrianConformal, VennAbers, binomial_interval, class_coverage


def cohort(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated scores by construction: y ~ Bernoulli(p), p skewed to benign like the cohort (~25% malignant)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.0, 3.0, n)
    return p, (rng.random(n) < p).astype(int)


def test_each_class_is_covered_at_the_target() -> None:
    """The guarantee is over the calib draw too: averaged over 12 draws, each class sits at 90%, not far above."""
    p, y = cohort(100_000, 1)
    rates: dict[str, list[float]] = {"benign": [], "malignant": []}
    for seed in range(12):
        conf = MondrianConformal(alpha=0.1).fit(*cohort(3000, 10 + seed))
        for name, (covered, n) in class_coverage(conf.sets(p), y).items():
            rates[name].append(covered / n)
    for name, r in rates.items():
        assert 0.893 <= float(np.mean(r)) <= 0.93, (name, r)  # 0.9 less about 2 standard errors
    conf = MondrianConformal(alpha=0.1).fit(*cohort(3000, 10))
    assert binomial_interval(100, 0.9) == (0.84, 0.95)  # scipy's exact quantiles: 84 and 95 of 100
    assert binomial_interval(0, 0.9) == (0.0, 1.0)
    assert conf.thresholds["malignant"] > conf.thresholds["benign"]  # the rare class needs the wider threshold
    assert 0.2 < conf.refer(p).mean() < 0.8
    again = MondrianConformal.from_dict(conf.to_dict())
    assert (again.sets(p) == conf.sets(p)).all()


def test_too_few_cases_of_a_class_keep_it_in_every_set_and_misuse_is_refused() -> None:
    conf = MondrianConformal(alpha=0.1).fit(np.array([0.1, 0.2, 0.9]), np.array([0, 0, 1]))
    assert conf.thresholds["malignant"] == 1.0 and conf.sets(np.array([0.01]))[0, 1]
    with pytest.raises(WorkbenchError, match="before fit"):
        MondrianConformal().sets(np.array([0.5]))
    with pytest.raises(WorkbenchError, match="alpha"):
        MondrianConformal(alpha=1.5).fit(np.array([0.5]), np.array([1]))


def test_venn_abers_brackets_the_true_risk_and_narrows_with_more_calib_cases() -> None:
    p, y = cohort(20, 3)
    test_p = np.array([0.05, 0.2, 0.5, 0.8])
    wide = VennAbers().fit(p, y).interval(test_p)
    p_big, y_big = cohort(2000, 4)
    va = VennAbers().fit(p_big, y_big)
    narrow = va.interval(test_p)
    assert (narrow[:, 0] <= narrow[:, 1]).all()
    assert (narrow[:, 1] - narrow[:, 0]).mean() < (wide[:, 1] - wide[:, 0]).mean()
    point = VennAbers.point(narrow)
    assert np.abs(point - test_p).max() < 0.12  # a calibrated score stays about where it was
    with pytest.raises(WorkbenchError, match="calib cases"):
        VennAbers().fit(np.array([]), np.array([]))
