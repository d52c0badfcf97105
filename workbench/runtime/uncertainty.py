"""When not to trust a risk: class-conditional conformal sets and Venn-Abers risk intervals, fitted on ``calib``.

Why class-conditional (Mondrian): a malignant case is the rarer class; an unconditional 90% set can cover benign
cases 95% of the time and malignant ones 70%. Calibrating one threshold per true class gives each class its own
>= 90% coverage (finite-sample guarantee under exchangeability within a site, which is why a RUN keeps one
calibrator per site as well as a pooled one).

Nonconformity of a case for a candidate label y is 1 - p(y), with p the calibrated probability. For class y,
the threshold is the ceil((n_y + 1)(1 - alpha))-th smallest score among the calib cases whose label is y; a
label joins a case's set when its score is at most that threshold. A set holding both labels, or none, is a
"refer to a clinician" case.

Venn-Abers (Vovk & Petej 2014, inductive form): two isotonic regressions of the calib labels on the scores, one
with the test case added as benign and one as malignant; the two fitted values at the case, p0 <= p1, bound its
risk. The width says how much the calibration data pin it down; ``p1 / (1 - p0 + p1)`` is the usual point value.
Numpy and scikit-learn's isotonic regression only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

CLASSES = ("benign", "malignant")


@dataclass
class MondrianConformal:
    """Per-class thresholds on 1 - p(label); ``alpha`` 0.1 is a 90% set."""

    alpha: float = 0.1
    thresholds: dict[str, float] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)

    def fit(self, p_malignant: np.ndarray, y: np.ndarray) -> MondrianConformal:
        p, y = np.asarray(p_malignant, dtype=float), np.asarray(y).astype(int)
        if not 0 < self.alpha < 1:
            raise WorkbenchError(f"conformal alpha {self.alpha}: expected a value in (0, 1)")
        for label, name in enumerate(CLASSES):
            scores = np.sort(1.0 - np.where(label == 1, p, 1.0 - p)[y == label])
            n = len(scores)
            k = math.ceil((n + 1) * (1 - self.alpha))
            # too few calib cases of this class for the level: the class is always in the set (threshold 1)
            self.thresholds[name] = float(scores[k - 1]) if 1 <= k <= n else 1.0
            self.n[name] = n
        return self

    def sets(self, p_malignant: np.ndarray) -> np.ndarray:
        """(N, 2) bool: is benign / malignant in each case's set."""
        if not self.thresholds:
            raise WorkbenchError("conformal calibrator used before fit (no calib cases seen)")
        p = np.asarray(p_malignant, dtype=float)
        return np.stack([p <= self.thresholds["benign"], 1.0 - p <= self.thresholds["malignant"]], axis=1)

    def refer(self, p_malignant: np.ndarray) -> np.ndarray:
        """True where the set is not a single label (both, or none)."""
        return self.sets(p_malignant).sum(1) != 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MondrianConformal:
        return cls(alpha=float(d["alpha"]), thresholds=dict(d["thresholds"]), n=dict(d["n"]))


def class_coverage(sets: np.ndarray, y: np.ndarray) -> dict[str, list[int]]:
    """{class: [covered, n]}: how many cases of each true class have their label in their set."""
    y = np.asarray(y).astype(int)
    return {name: [int(sets[y == label, label].sum()), int((y == label).sum())] for label, name in enumerate(CLASSES)}


def binomial_interval(n: int, p: float, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of covered / n when each case is covered with chance p (exact quantiles)."""
    from scipy.stats import binom

    if n == 0:
        return 0.0, 1.0
    lo, hi = binom.ppf((1 - level) / 2, n, p), binom.ppf(1 - (1 - level) / 2, n, p)
    return float(lo) / n, float(hi) / n


@dataclass
class VennAbers:
    """Inductive Venn-Abers over calib scores (any monotone risk score; calibrated probabilities here)."""

    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def fit(self, score: np.ndarray, y: np.ndarray) -> VennAbers:
        if len(score) == 0:
            raise WorkbenchError("Venn-Abers needs calib cases; none were given")
        self.scores, self.labels = [float(s) for s in score], [int(v) for v in y]
        return self

    def interval(self, score: np.ndarray) -> np.ndarray:
        """(N, 2): [p0, p1] for each case, p0 <= p1."""
        from sklearn.isotonic import IsotonicRegression

        s, y = np.asarray(self.scores), np.asarray(self.labels, dtype=float)
        out = np.empty((len(score), 2))
        for i, t in enumerate(np.asarray(score, dtype=float)):
            for j, label in enumerate((0.0, 1.0)):
                iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
                iso.fit(np.append(s, t), np.append(y, label))
                out[i, j] = float(iso.predict([t])[0])
        return np.sort(out, axis=1)

    @staticmethod
    def point(interval: np.ndarray) -> np.ndarray:
        p0, p1 = interval[:, 0], interval[:, 1]
        return p1 / (1.0 - p0 + p1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["CLASSES", "MondrianConformal", "VennAbers", "binomial_interval", "class_coverage"]
