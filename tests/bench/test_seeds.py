"""The seed aggregator (workbench/bench/seeds.py) against answers known without it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.bench.seeds import BootstrapConfig, Figure, by_seed, mean_ci, paired, put
from workbench.metrics import auroc

FAST = BootstrapConfig(n_boot=400)


def _cases(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and a latent signal: scores built from it below have an AUROC well inside (0.5, 1)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    return y, y * 1.0 + rng.normal(0, 1.0, n)


def test_mean_is_the_plain_mean_of_per_seed_aurocs() -> None:
    y, signal = _cases()
    rng = np.random.default_rng(1)
    seeds = [signal + rng.normal(0, s, len(y)) for s in (0.2, 0.6, 1.0, 1.5, 2.0)]
    mean, (lo, hi) = mean_ci(Figure(y, seeds), FAST)
    assert mean == pytest.approx(np.mean([auroc(y, s) for s in seeds]), abs=1e-12)
    assert lo < mean < hi


def test_identical_seeds_give_the_case_bootstrap_interval() -> None:
    y, signal = _cases()
    one = mean_ci(Figure(y, [signal]), FAST)
    five = mean_ci(Figure(y, [signal] * 5), FAST)
    assert five[0] == pytest.approx(one[0]) and five[1] == pytest.approx(one[1])


def test_a_single_seed_interval_matches_the_auroc_standard_error() -> None:
    """Hanley & McNeil (1982): the standard error of an AUROC from its value and the class counts; the case
    bootstrap's 95% interval should be about 2 x 1.96 of it wide."""
    y, signal = _cases(n=600, seed=3)
    a = auroc(y, signal)
    n1, n0 = int(y.sum()), int((1 - y).sum())
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    _, (lo, hi) = mean_ci(Figure(y, [signal]), BootstrapConfig(n_boot=1000))
    assert (hi - lo) / (2 * 1.96) == pytest.approx(se, rel=0.2)


def test_a_perfect_scorer_has_the_interval_1_1() -> None:
    y, _ = _cases()
    perfect = [y + 0.01 * k for k in range(3)]
    assert mean_ci(Figure(y, perfect), FAST) == (1.0, [1.0, 1.0])


def test_a_model_minus_itself_is_zero_with_interval_0_0() -> None:
    y, signal = _cases()
    rng = np.random.default_rng(2)
    seeds = [signal + rng.normal(0, 0.5, len(y)) for _ in range(4)]
    assert paired(Figure(y, seeds, baseline=seeds), FAST) == {"value": 0.0, "ci95": [0.0, 0.0]}


def test_seed_spread_widens_the_interval_to_both_seeds() -> None:
    """Two seeds far apart on the same cases: a quarter of the replicates draw the weaker seed twice, a quarter
    the stronger twice, so the interval reaches (about) each seed's own value; one seed alone is much narrower."""
    y, signal = _cases(n=1000)
    strong, weak = signal + 1.5 * y, signal + np.random.default_rng(5).normal(0, 3, len(y))
    a_strong, a_weak = auroc(y, strong), auroc(y, weak)
    assert a_strong - a_weak > 0.15
    mean, (lo, hi) = mean_ci(Figure(y, [strong, weak]), FAST)
    assert mean == pytest.approx((a_strong + a_weak) / 2)
    assert lo < a_weak + 0.03 and hi > a_strong - 0.03
    _, (lo1, hi1) = mean_ci(Figure(y, [weak]), FAST)
    assert hi - lo > 2 * (hi1 - lo1)


def test_a_paired_difference_is_narrower_than_either_figure() -> None:
    """A and B share most of their errors (B = A + small noise): the paired interval, same cases and seed in
    every replicate, is far narrower than B's own interval, and holds the true difference's sign."""
    y, signal = _cases(n=500)
    rng = np.random.default_rng(4)
    a = [signal + 0.7 * y + rng.normal(0, 0.3, len(y)) for _ in range(3)]
    b = [s + rng.normal(0, 0.3, len(y)) - 0.7 * y for s in a]
    gain = paired(Figure(y, a, baseline=b), FAST)
    assert gain["value"] == pytest.approx(np.mean([auroc(y, x) - auroc(y, z) for x, z in zip(a, b, strict=True)]))
    assert 0 < gain["ci95"][0] < gain["value"] < gain["ci95"][1]
    _, (lo_b, hi_b) = mean_ci(Figure(y, b), FAST)
    assert gain["ci95"][1] - gain["ci95"][0] < hi_b - lo_b


def test_the_interval_is_reproducible() -> None:
    y, signal = _cases()
    seeds = [signal, signal * 2 + 0.1]
    assert mean_ci(Figure(y, seeds), FAST) == mean_ci(Figure(y, seeds), FAST)


def test_put_writes_the_mean_the_ci95_sibling_and_n_seeds() -> None:
    y, signal = _cases()
    rng = np.random.default_rng(6)
    per_seed = {s: {"fused": signal + rng.normal(0, 0.5, len(y)), "ct_only": signal + rng.normal(0, 1.5, len(y))}
                for s in range(3)}
    figs: dict = by_seed(y, per_seed)
    figs["ct_only_ceiling"] = 0.81  # a reference point: written as is, no interval
    result: dict = {}
    put(result, "auroc", figs, FAST)
    assert set(result) == {"auroc", "auroc_ci95", "n_seeds"} and result["n_seeds"] == 3
    assert set(result["auroc"]) == {"fused", "ct_only", "ct_only_ceiling"}
    assert set(result["auroc_ci95"]) == {"fused", "ct_only"}
    assert result["auroc"]["fused"] == pytest.approx(np.mean([auroc(y, per_seed[s]["fused"]) for s in range(3)]))
    lo, hi = result["auroc_ci95"]["fused"]
    assert lo <= result["auroc"]["fused"] <= hi
    put(result, "ece_like", Figure(y, [signal] * 3, metric=lambda yy, ss: float(np.mean(ss))), FAST)
    assert isinstance(result["ece_like"], float) and len(result["ece_like_ci95"]) == 2


def test_by_seed_refuses_seeds_with_different_figures() -> None:
    y, signal = _cases(n=20)
    with pytest.raises(ValueError):
        by_seed(y, {0: {"fused": signal}, 1: {"ct_only": signal}})
