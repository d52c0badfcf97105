"""The risk a report states and the interval around it: one smooth calibration of the model's logit, with a
bootstrap interval of that same calibration.

It is the default (``UncertaintyConfig.stated_risk = "platt"``), chosen on the training cohort's val and calib cases
by ``workbench.bench.calibration_sweep``: its worst site was 0.042 off the true risk against 0.050 for the
Venn-Abers point estimate (``"venn_abers"``, the earlier default, kept as the alternative).

Why a smooth risk: the Venn-Abers point estimate rests on isotonic regression, a step function of the score, so a note edit that moves the model's logit often leaves the stated risk
exactly where it was (37% of the evaluation cohort's risk-factor edits did not move it at all), and a clinician
who adds "current smoker" to a note and sees the same risk concludes the tool ignores the note. A Platt map is
strictly increasing in the logit: every move of the model's score moves the stated risk the same way.

The interval is the calibration's own uncertainty: the same Platt fit refitted on ``n_boot`` bootstrap resamples
of the cases it was fitted on, and the central ``level`` share of the refitted risks at this case's logit. It is
wide where the calibration cases say little (high risks at a site with few malignant cases) and narrows as a site
gathers cases, like the Venn-Abers interval it replaces; unlike it, the stated risk is inside it by construction
(the band is widened to the point in the rare case a skewed bootstrap leaves it outside: ``contains``).

The fit set is every site's ``train``, ``val`` and ``calib`` cases, one pooled fit, by default
(``UncertaintyConfig.stated_fit``, ``stated_min_own``; chosen on val by ``workbench.bench.calibration_sweep``):
the stated risk is not the conformal score (that stays the val-fitted calibration, fixed before calib is seen), so
it may use every labelled case. Why the training cases: the fit's intercept is limited by label noise, and on the
full preset the 466 val and calib labels ran 0.016 above their true risk, which a fit on them alone states to every
report; the 1,114 training labels did not. The model has fit them, so they enter only when its slope on them
agrees with the held-out cases' (``run_uncertainty.fit_stated``: a model that separates its own training cases
more sharply than new ones keeps them out, and the RUN's warnings say so); a DP run's node keeps to its held-out
cases, where this was not measured.

What the interval is not: a range for the patient's true risk. It is the calibration's uncertainty; the model's
own error (its AUROC below the truth's) is outside it. On the full preset's val and calib cases it holds the
generator's true risk for 30% of cases (Venn-Abers' [p0, p1] for 28%); on data where the model's score is the
true log-odds, for over 80% (``tests/runtime/test_run_uncertainty.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.runtime.calibration import Calibration, fit_calibration

N_BOOT = 200
LEVEL = 0.95


@dataclass
class StatedRisk:
    """A site's stated-risk calibration and its bootstrap refits (``boot``: (temperature, bias) pairs)."""

    calibration: Calibration
    boot: list[tuple[float, float]] = field(default_factory=list)
    level: float = LEVEL

    @classmethod
    def fit(cls, logits: np.ndarray, y: np.ndarray, pos_weight: float, *, n_boot: int = N_BOOT,
            level: float = LEVEL, seed: int = 0) -> StatedRisk:
        """Platt scaling on (logits, y) after the prior correction by log(pos_weight), and ``n_boot`` refits on
        case resamples (seeded: the same cases give the same interval). With fewer than 10 cases or one class
        there is nothing to resample into a fit (``boot`` empty): the interval is [0, 1], and the caller says so
        (``fit_site_uncertainty``'s warnings)."""
        z, y = np.asarray(logits, dtype=float), np.asarray(y, dtype=float)
        cal = fit_calibration(z, y, pos_weight)
        boot: list[tuple[float, float]] = []
        if len(y) >= 10 and 0 < y.mean() < 1:
            rng = np.random.default_rng(seed)
            for _ in range(n_boot):
                i = rng.integers(0, len(y), len(y))
                if 0 < y[i].mean() < 1:
                    c = fit_calibration(z[i], y[i], pos_weight)
                    boot.append((c.temperature, c.bias))
        return cls(cal, boot, level)

    def shifted(self, logits: np.ndarray, y: np.ndarray, k: float, *, seed: int = 0) -> StatedRisk:
        """This (pooled) calibration with a site's own intercept shift: the maximum-likelihood log-odds offset
        of the site's cases (``logits``, ``y``) under this map, shrunk toward 0 by n / (n + k) (k cases' worth of
        belief in the pooled fit), and each bootstrap refit shifted by the same estimate on a resample of the
        site's cases, so the interval carries the shift's uncertainty too."""
        z, y = np.asarray(logits, dtype=float), np.asarray(y, dtype=float)
        rng = np.random.default_rng(seed)
        base = self.calibration
        shift = _offset(self._eta(z, base.temperature, base.bias), y) * len(y) / (len(y) + k)
        boot = []
        for t, b in self.boot:
            i = rng.integers(0, len(y), len(y))
            boot.append((t, b + _offset(self._eta(z[i], t, b), y[i]) * len(y) / (len(y) + k)))
        cal = Calibration(base.temperature, base.logit_shift, f"{base.fitted_on} + site shift", base.n + len(y),
                          base.bias + shift, base.method)
        return StatedRisk(cal, boot, self.level)

    def _eta(self, z: np.ndarray, temperature: float, bias: float) -> np.ndarray:
        return (z - self.calibration.logit_shift) / temperature + bias

    def apply(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) stated risks and (N, 2) intervals [low, high] that contain them ([0, 1] without refits)."""
        z = np.asarray(logits, dtype=float)
        p = self.calibration.apply(z)
        if not self.boot:
            return p, np.stack([np.zeros_like(p), np.ones_like(p)], axis=1)
        t = np.array([b[0] for b in self.boot])[:, None]
        bias = np.array([b[1] for b in self.boot])[:, None]
        q = 1.0 / (1.0 + np.exp(-((z[None, :] - self.calibration.logit_shift) / t + bias)))
        tail = (1.0 - self.level) / 2
        lo, hi = np.quantile(q, tail, axis=0), np.quantile(q, 1.0 - tail, axis=0)
        return p, contains(p, np.stack([lo, hi], axis=1))

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration.to_dict(), "boot": [list(b) for b in self.boot], "level": self.level}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StatedRisk:
        return cls(Calibration.from_dict(d["calibration"]), [(float(t), float(b)) for t, b in d.get("boot", [])],
                   float(d.get("level", LEVEL)))


def _offset(eta: np.ndarray, y: np.ndarray, iters: int = 25) -> float:
    """The log-odds offset d maximising the likelihood of y under sigmoid(eta + d) (Newton; 0 for no cases or
    one class, where the maximum is at infinity)."""
    if len(y) == 0 or y.min() == y.max():
        return 0.0
    d = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(eta + d)))
        g, h = float((y - p).sum()), float((p * (1 - p)).sum())
        if h <= 1e-12:
            break
        d += g / h
        if abs(g / h) < 1e-10:
            break
    return float(d)


def contains(p: np.ndarray, interval: np.ndarray) -> np.ndarray:
    """``interval`` widened just enough to hold ``p`` (a percentile band of a skewed bootstrap can miss the point
    fit by a hair at the extremes; a stated risk outside its own interval is never shown)."""
    return np.stack([np.minimum(interval[:, 0], p), np.maximum(interval[:, 1], p)], axis=1)


__all__ = ["LEVEL", "N_BOOT", "StatedRisk", "contains"]
