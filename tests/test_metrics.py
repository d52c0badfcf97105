"""Metrics against scikit-learn and closed forms; temperature scaling recovers a known temperature."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from workbench.metrics import (
    auprc,
    auroc,
    brier,
    cohen_kappa,
    ece,
    paired_bootstrap_auroc_diff,
    reliability_bins,
    sensitivity_at_specificity,
)
from workbench.runtime.calibration import apply_temperature, fit_temperature


@pytest.fixture
def scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    p = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.2, 500), 0.001, 0.999)
    return y.astype(float), p


def test_discrimination_metrics_match_sklearn(scores) -> None:
    y, p = scores
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_sensitivity_at_specificity_on_a_known_split() -> None:
    y = np.array([0] * 10 + [1] * 4)
    p = np.array([0.1] * 9 + [0.5] + [0.4, 0.6, 0.7, 0.8])  # 90% of benign at or below 0.1; threshold is 0.5
    assert sensitivity_at_specificity(y, p, 0.9) == pytest.approx(0.75)


def test_ece_is_zero_for_perfect_calibration_and_known_for_a_constant() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(200_000)
    y = (rng.random(200_000) < p).astype(float)
    assert ece(y, p) < 0.01
    assert ece(np.array([0, 0, 0, 1.0]), np.full(4, 0.75)) == pytest.approx(0.5)


def test_reliability_bins_by_hand_and_ece_is_their_weighted_gap() -> None:
    """Six cases in three of five bins, worked by hand: [0, .2): 0.05, 0.15 (labels 0, 1); [.4, .6): 0.5 (1);
    [.8, 1]: 0.85, 0.95, 1.0 (1, 1, 0); 1.0 falls in the top bin, not past it."""
    y = np.array([0, 1, 1, 1, 1, 0.0])
    p = np.array([0.05, 0.15, 0.5, 0.85, 0.95, 1.0])
    r = reliability_bins(y, p, n_bins=5)
    assert r["lo"] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8]) and r["hi"] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert r["n"] == [2, 0, 1, 0, 3]
    assert r["mean_p"][0] == pytest.approx(0.10) and r["mean_p"][2] == pytest.approx(0.5)
    assert r["mean_p"][4] == pytest.approx(0.9333333333)
    assert r["observed"] == pytest.approx([0.5, None, 1.0, None, 2 / 3])
    assert r["mean_p"][1] is None and r["mean_p"][3] is None
    # ECE = (2 |0.10 - 0.5| + 1 |0.5 - 1| + 3 |0.9333 - 0.6667|) / 6 = (0.8 + 0.5 + 0.8) / 6 = 0.35
    assert ece(y, p, n_bins=5) == pytest.approx(0.35)
    assert ece(np.zeros(0), np.zeros(0)) == 0.0


def test_cohen_kappa_by_hand() -> None:
    """Two raters, 10 cases, labels 0/1: agree on 8 (6 zeros, 2 ones); rater a says 1 three times, b three times.
    p_o = 0.8, p_e = 0.7 x 0.7 + 0.3 x 0.3 = 0.58, kappa = 0.22 / 0.42."""
    a = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 0])
    b = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1])
    assert cohen_kappa(a, b) == pytest.approx(0.22 / 0.42)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(np.zeros(5), np.zeros(5)) == 1.0


def test_temperature_scaling_recovers_the_true_temperature() -> None:
    rng = np.random.default_rng(2)
    true_logit = rng.normal(0, 2, 40_000)
    y = (rng.random(40_000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    t = fit_temperature(3.0 * true_logit, y)  # an over-confident model: logits 3x too large
    assert t == pytest.approx(3.0, rel=0.05)
    assert ece(y, apply_temperature(3.0 * true_logit, t)) < ece(y, apply_temperature(3.0 * true_logit, 1.0))


def test_bootstrap_auroc_interval_narrows_with_cases_and_is_undefined_for_one_class() -> None:
    from workbench.metrics import bootstrap_auroc_ci

    rng = np.random.default_rng(5)
    widths = []
    for n in (100, 1600):
        y = rng.integers(0, 2, n).astype(float)
        s = y + rng.normal(0, 1.2, n)
        lo, hi = bootstrap_auroc_ci(y, s, n_boot=400)
        assert lo < auroc(y, s) < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2.5  # about 1/sqrt(16) = 1/4 as wide with 16x the cases
    perfect = np.r_[np.zeros(20), np.ones(20)]
    assert bootstrap_auroc_ci(perfect, perfect, n_boot=200) == (1.0, 1.0)
    lo, hi = bootstrap_auroc_ci(np.ones(30), rng.random(30), n_boot=200)
    assert np.isnan(lo) and np.isnan(hi)


def test_paired_bootstrap_interval_contains_the_difference(scores) -> None:
    y, p = scores
    noisy = p + np.random.default_rng(3).normal(0, 0.3, len(p))
    diff, (lo, hi) = paired_bootstrap_auroc_diff(y, p, noisy, n_boot=300)
    assert lo < diff < hi and diff > 0


def test_evidence_gate_target_favours_the_modality_that_moves_the_case() -> None:
    import torch

    from workbench.train.loss import evidence_gate_target

    # columns (ct, notes); case 0: typical CT, striking note; case 1: striking CT, typical note; case 2: no note
    z = torch.tensor([[-1.0, 3.0], [4.0, 0.0], [-1.0, 0.0], [-2.0, -3.0]])
    present = torch.tensor([[True, True], [True, True], [True, False], [True, True]])
    g = evidence_gate_target(z, present, tau=1.0)
    assert g[0, 1] > g[0, 0] and g[1, 0] > g[1, 1]
    assert g[2, 1] == 0 and g[2, 0] == 1
    assert torch.allclose(g.sum(1), torch.ones(4))
