"""The one metrics module: discrimination and calibration of a risk score, and a small logistic fit, in numpy
(no scikit-learn at run time). Shared by the cohort ceilings, training, evaluation and the benchmarks."""

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


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve)."""
    y = np.asarray(y, dtype=float)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(p, dtype=float), kind="mergesort")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def sensitivity_at_specificity(y: np.ndarray, p: np.ndarray, specificity: float = 0.9) -> float:
    """Share of malignant cases above the threshold that keeps ``specificity`` of benign cases below it."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=float)
    if y.all() or not y.any():
        return float("nan")
    threshold = np.quantile(p[~y], specificity, method="higher")
    return float((p[y] > threshold).mean())


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error with equal-width probability bins (weighted by bin size)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(total)


def risk_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC, sensitivity at 90% specificity, Brier, ECE, n and prevalence."""
    y = np.asarray(y, dtype=float)
    return {
        "auroc": auroc(y, p),
        "auprc": auprc(y, p),
        "sens_at_90_spec": sensitivity_at_specificity(y, p, 0.9),
        "brier": brier(y, p),
        "ece": ece(y, p),
        "n": int(len(y)),
        "prevalence": float(y.mean()) if len(y) else float("nan"),
    }


def paired_bootstrap_auroc_diff(y: np.ndarray, a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000,
                                seed: int = 0) -> tuple[float, tuple[float, float]]:
    """AUROC(a) - AUROC(b) on the same cases, and its 95% percentile interval over paired resamples."""
    y, a, b = np.asarray(y), np.asarray(a), np.asarray(b)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            diffs.append(auroc(y[i], a[i]) - auroc(y[i], b[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return auroc(y, a) - auroc(y, b), (float(lo), float(hi))
