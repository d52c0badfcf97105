"""The stated risk (``workbench.runtime.stated_risk``): a smooth calibration of the logit with a bootstrap
interval of that calibration, on data whose true risk is known."""

from __future__ import annotations

import numpy as np

from workbench.runtime.stated_risk import StatedRisk, contains


def _cases(n: int, seed: int, scale: float = 1.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits over-confident by ``scale`` against the true log-odds; labels drawn from the true risk."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-1.0, 1.3, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(float)
    return scale * true_logit, y, true_logit


def test_the_stated_risk_follows_every_move_of_the_logit_and_recovers_the_true_risk() -> None:
    z, y, _ = _cases(3000, 0)
    sr = StatedRisk.fit(z, y, pos_weight=1.0)
    grid = np.linspace(-6, 4, 200)
    p, band = sr.apply(grid)
    assert (np.diff(p) > 0).all()  # strictly increasing: an edit that moves the logit moves the risk
    truth = 1 / (1 + np.exp(-grid / 1.6))
    assert np.abs(p - truth).max() < 0.05
    assert ((band[:, 0] <= p) & (p <= band[:, 1])).all()


def test_the_interval_narrows_with_more_cases_and_mostly_holds_the_true_risk() -> None:
    grid_true = np.linspace(-3, 1.5, 50)
    widths, held = [], []
    for n in (120, 2400):
        z, y, _ = _cases(n, 1)
        _, band = StatedRisk.fit(z, y, 1.0).apply(1.6 * grid_true)
        widths.append(float(np.median(band[:, 1] - band[:, 0])))
        truth = 1 / (1 + np.exp(-grid_true))
        held.append(float(np.mean((band[:, 0] <= truth) & (truth <= band[:, 1]))))
    assert widths[1] < widths[0] / 2.5  # about 1/sqrt(n): 20x the cases, ~4.5x narrower
    assert held[1] > 0.8


def test_the_same_cases_give_the_same_interval_and_a_round_trip_keeps_it() -> None:
    z, y, _ = _cases(200, 2)
    a, b = StatedRisk.fit(z, y, 1.0), StatedRisk.fit(z, y, 1.0)
    assert a.to_dict() == b.to_dict()
    again = StatedRisk.from_dict(a.to_dict())
    np.testing.assert_allclose(again.apply(z[:20])[1], a.apply(z[:20])[1])


def test_too_few_cases_give_no_interval_rather_than_a_false_one() -> None:
    z, y, _ = _cases(6, 3)
    sr = StatedRisk.fit(z, y, 1.0)
    assert sr.boot == []
    p, band = sr.apply(np.array([-1.0, 0.0]))
    assert (band == np.array([[0.0, 1.0], [0.0, 1.0]])).all() and ((p > 0) & (p < 1)).all()


def test_contains_widens_only_as_far_as_the_point() -> None:
    p = np.array([0.2, 0.5, 0.9])
    band = np.array([[0.25, 0.4], [0.4, 0.6], [0.7, 0.85]])
    np.testing.assert_allclose(contains(p, band), [[0.2, 0.4], [0.4, 0.6], [0.7, 0.9]])


def test_a_site_shift_moves_a_pooled_fit_toward_the_sites_own_odds_by_its_share_of_the_evidence() -> None:
    z, y, _ = _cases(2000, 4)
    pooled = StatedRisk.fit(z, y, 1.0)
    zs, ys, _ = _cases(400, 5)
    ys = (np.random.default_rng(6).random(len(zs)) < 1 / (1 + np.exp(-(zs / 1.6 + 1.0)))).astype(float)  # +1 log-odds
    full = pooled.shifted(zs, ys, k=0.0)
    half = pooled.shifted(zs, ys, k=400.0)
    d_full = full.calibration.bias - pooled.calibration.bias
    d_half = half.calibration.bias - pooled.calibration.bias
    assert 0.7 < d_full < 1.3
    assert abs(d_half - d_full / 2) < 1e-9
    p, band = half.apply(zs[:50])
    assert ((band[:, 0] <= p) & (p <= band[:, 1])).all()
