"""Figures over several training seeds: the mean over seeds and a 95% interval from a hierarchical bootstrap.

The one aggregator of ``bench model`` and ``bench federated`` (docs/architecture.md §9, "How the figures are
made"). Every seed's model scores the same evaluation cases, so a figure's uncertainty has two sources: which
seed (model init, data order, DP noise) and which cases. One bootstrap replicate draws both:
- the seeds, ``S`` of them with replacement from the ``S`` run;
- the cases, ``n`` with replacement, the **same case indices for every seed** in that replicate (the seeds are
  scored on the same cases, so their errors are correlated; resampling them apart would understate the width);
and the replicate's figure is the metric averaged over the chosen seeds. The interval is the 2.5 and 97.5
percentiles of the replicates (a percentile interval). A paired difference (A - B, the same cases and seed) is
bootstrapped the same way with the difference as the metric, so what the two share cancels.

Replicates whose metric is undefined (AUROC on a resample with one class) are left out. The bootstrap is
seeded (``BootstrapConfig.seed``): the same inputs give the same interval, and every figure with as many seeds
and cases sees the same resamples. With one seed, or with identical seeds, the interval is the plain case
bootstrap's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.metrics import auroc

Metric = Callable[[np.ndarray, np.ndarray], float]
MIN_REPLICATES = 20  # fewer usable replicates than this (nearly every resample of one class): the interval is nan


@dataclass(frozen=True)
class BootstrapConfig:
    """How intervals are drawn; the defaults are what every benchmark JSON reports."""

    n_boot: int = 1000  # replicates
    seed: int = 1729  # fixed: the intervals of a JSON are reproducible from its per-seed predictions
    level: float = 0.95


@dataclass
class Figure:
    """One figure to aggregate: labels ``y``, per training seed the score vector the metric reads, and for a
    paired difference the baseline's score vector per seed (the same cases and seed)."""

    y: np.ndarray
    per_seed: Sequence[np.ndarray]
    metric: Metric = auroc
    baseline: Sequence[np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y)
        self.per_seed = [np.asarray(s) for s in self.per_seed]
        if not self.per_seed:
            raise ValueError("a figure needs at least one seed")
        if any(len(s) != len(self.y) for s in self.per_seed):
            raise ValueError("every seed must score the same cases as y")
        if self.baseline is not None:
            self.baseline = [np.asarray(s) for s in self.baseline]
            if len(self.baseline) != len(self.per_seed) or any(len(s) != len(self.y) for s in self.baseline):
                raise ValueError("a paired baseline needs one score vector per seed, on the same cases")

    def value(self, s: int, idx: np.ndarray | None = None) -> float:
        """Seed ``s``'s metric on the cases ``idx`` (all when None); the paired difference when there is a
        baseline."""
        i = slice(None) if idx is None else idx
        v = self.metric(self.y[i], self.per_seed[s][i])
        if self.baseline is not None:
            v -= self.metric(self.y[i], self.baseline[s][i])
        return float(v)


def mean_ci(figure: Figure, config: BootstrapConfig = BootstrapConfig()) -> tuple[float, list[float]]:
    """The mean over seeds of the figure on every case, and its interval [low, high] (module docstring)."""
    n_seeds, n = len(figure.per_seed), len(figure.y)
    mean = float(np.mean([figure.value(s) for s in range(n_seeds)]))
    # separate streams for the cases and the seeds: one seed (or identical seeds) gives the case bootstrap's draws
    case_rng = np.random.default_rng([config.seed, 0])
    seed_rng = np.random.default_rng([config.seed, 1])
    reps = []
    for _ in range(config.n_boot):
        idx = case_rng.integers(0, n, n)
        counts = np.bincount(seed_rng.integers(0, n_seeds, n_seeds), minlength=n_seeds)
        chosen = np.flatnonzero(counts)
        vals = np.array([figure.value(int(s), idx) for s in chosen])
        if np.all(np.isfinite(vals)):
            reps.append(float((vals * counts[chosen]).sum() / n_seeds))
    if len(reps) < MIN_REPLICATES or not np.isfinite(mean):  # a handful of cases of one class: no interval to quote
        return mean, [float("nan"), float("nan")]
    tail = 100 * (1 - config.level) / 2
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return mean, [float(lo), float(hi)]


def paired(figure: Figure, config: BootstrapConfig = BootstrapConfig()) -> dict[str, Any]:
    """A paired difference as the README quotes it: ``{"value": mean over seeds, "ci95": [low, high]}``."""
    if figure.baseline is None:
        raise ValueError("paired() needs a figure with a baseline")
    value, ci = mean_ci(figure, config)
    return {"value": value, "ci95": ci}


def by_seed(y: np.ndarray, scores: Mapping[int, Mapping[str, np.ndarray]], metric: Metric = auroc) -> dict[str, Figure]:
    """A dict of per-seed score dicts ({seed: {name: scores}}) -> {name: Figure}, seeds in sorted order; every
    seed must name the same figures."""
    seeds = sorted(scores)
    names = list(scores[seeds[0]])
    if any(set(scores[s]) != set(names) for s in seeds):
        raise ValueError("every seed must carry the same figures")
    return {k: Figure(y, [scores[s][k] for s in seeds], metric) for k in names}


def put(result: dict[str, Any], key: str, figures: Figure | Mapping[str, Figure | Mapping[str, Figure]],
        config: BootstrapConfig = BootstrapConfig()) -> None:
    """Write the mean under ``key`` (the existing key keeps its meaning, now the mean over seeds) and the
    interval under ``<key>_ci95`` with the same inner keys, [low, high]; and ``n_seeds``. ``figures`` is one
    Figure (a scalar key such as ``ece``) or a dict of them, nested at most once (``per_site_auroc_dp``:
    epsilon -> site -> Figure). A figure given as a plain number (a reference point with no seed, no cases to
    resample) is written as is, with no interval."""
    def one(f: Any) -> tuple[Any, Any]:
        if isinstance(f, Figure):
            return mean_ci(f, config)
        if isinstance(f, Mapping):
            pairs = {k: one(v) for k, v in f.items()}
            return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
        return f, None

    mean, ci = one(figures)
    result[key] = mean
    if isinstance(ci, dict):
        ci = {k: v for k, v in ci.items() if v is not None}
    result[f"{key}_ci95"] = ci
    n = _n_seeds(figures)
    if n:
        result["n_seeds"] = max(n, result.get("n_seeds", 0))


def _n_seeds(f: Any) -> int:
    if isinstance(f, Figure):
        return len(f.per_seed)
    if isinstance(f, Mapping):
        return max((_n_seeds(v) for v in f.values()), default=0)
    return 0


def seed_count(requested: int | None, *, quick: bool, full: int, quick_default: int) -> int:
    """How many training seeds a benchmark runs: ``--seeds`` when given, else its preset's default; at least one."""
    n = requested if requested is not None else (quick_default if quick else full)
    if n < 1:
        raise WorkbenchError(f"--seeds {n}: need at least one training seed")
    return n


__all__ = ["BootstrapConfig", "Figure", "by_seed", "mean_ci", "paired", "put", "seed_count"]
