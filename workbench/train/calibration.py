"""Temperature scaling (Guo et al., 2017): one scalar T fitted on the ``val`` split, p = sigmoid(logit / T).

It changes confidence, never the ranking, so AUROC is untouched and ECE is what it buys.
"""

from __future__ import annotations

import numpy as np


def _nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    z = logits / t
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: np.ndarray, y: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The T in [lo, hi] minimising the negative log-likelihood on (logits, y): golden-section on log T.

    The NLL of a temperature-scaled logistic model is unimodal in log T, so the search is exact to 1e-6.
    """
    logits, y = np.asarray(logits, dtype=float), np.asarray(y, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return 1.0
    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    while b - a > 1e-6:
        if _nll(logits, y, np.exp(c)) < _nll(logits, y, np.exp(d)):
            b, d = d, c
            c = b - g * (b - a)
        else:
            a, c = c, d
            d = a + g * (b - a)
    return float(np.exp((a + b) / 2))


def apply_temperature(logits: np.ndarray, t: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=float) / t))
