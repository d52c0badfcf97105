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


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, list]:
    """A reliability diagram's numbers: equal-width probability bins ([0, 0.1), ..., [0.9, 1.0] for 10) and, per
    bin, its edges, how many cases fall in it, their mean stated risk and the observed share of positives (None
    for an empty bin). Plain lists, so several runs (seeds) can be summed or averaged bin by bin; ``ece`` is the
    count-weighted mean gap of the same bins, so the figure and the number cannot disagree."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    out: dict[str, list] = {"lo": [b / n_bins for b in range(n_bins)], "hi": [(b + 1) / n_bins for b in range(n_bins)],
                            "n": [], "mean_p": [], "observed": []}
    for b in range(n_bins):
        sel = bins == b
        out["n"].append(int(sel.sum()))
        out["mean_p"].append(float(p[sel].mean()) if sel.any() else None)
        out["observed"].append(float(y[sel].mean()) if sel.any() else None)
    return out


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error with equal-width probability bins (weighted by bin size; ``reliability_bins``);
    0 for no case."""
    r = reliability_bins(y, p, n_bins)
    total = sum(r["n"])
    if not total:
        return 0.0
    return float(sum(n * abs(m - o) for n, m, o in zip(r["n"], r["mean_p"], r["observed"], strict=True) if n) / total)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two raters' integer labels: their agreement beyond what their label frequencies give by
    chance (1: always agree; 0: chance). 1.0 when both use a single, identical label throughout."""
    a, b = np.asarray(a).astype(int), np.asarray(b).astype(int)
    k = int(max(a.max(), b.max())) + 1
    joint = np.zeros((k, k))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    po, pe = float(np.trace(joint)), float(joint.sum(0) @ joint.sum(1))
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


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


def bootstrap_auroc_ci(y: np.ndarray, score: np.ndarray, *, n_boot: int = 2000, seed: int = 0
                       ) -> tuple[float, float]:
    """95% percentile interval of AUROC over case resamples (one model, one seed: the case sampling alone).

    Resamples that draw a single class are skipped; fewer than 20 usable resamples (a handful of cases of one
    class) give (nan, nan) rather than an interval nobody should quote."""
    y, score = np.asarray(y), np.asarray(score)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            values.append(auroc(y[i], score[i]))
    if len(values) < 20:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


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
