"""Small, dependency-free metrics shared by the cohort ceilings and the benchmarks."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic (ties get half credit)."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-4, iters: int = 50) -> np.ndarray:
    """Logistic regression by Newton-Raphson (IRLS) with a tiny ridge; returns [intercept, *coefs].

    Columns are standardised internally so the ridge is scale-free; the returned coefficients apply to the
    raw columns.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    z = np.column_stack([np.ones(len(x)), (x - mu) / sd])  # (N, 1 + F)
    w = np.zeros(z.shape[1])
    ridge = l2 * np.eye(z.shape[1])
    ridge[0, 0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) + ridge @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    coefs = w[1:] / sd
    return np.concatenate([[w[0] - (coefs * mu).sum()], coefs])


def predict_logistic(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(w[0] + np.asarray(x, dtype=np.float64) @ w[1:])))
