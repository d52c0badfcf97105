"""``bench explain`` over seeds: per-site calibration against the true risk's floor, coverage and the explanation
checks, each the mean over seeds with an interval; on hand-made numbers whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.bench.explain_bench import explained_rows
from workbench.bench.explain_seeds import calibration_over_seeds, coverage_over_seeds, explanations_over_seeds
from workbench.metrics import ece


def _cohort(n: int = 2000) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    risk = rng.uniform(0.02, 0.9, n)
    y = (rng.uniform(size=n) < risk).astype(float)
    return ["a" if i % 2 else "b" for i in range(n)], y, risk


def test_a_model_stating_the_true_risk_has_no_excess_and_a_shifted_one_has_its_own() -> None:
    sites, y, risk = _cohort()
    shifted = np.clip(risk + 0.15, 0, 1)
    r = calibration_over_seeds(sites, y, risk, [risk, shifted])
    m = {s: np.array(sites) == s for s in ("a", "b")}
    for s in ("a", "b"):
        own = [ece(y[m[s]], risk[m[s]]), ece(y[m[s]], shifted[m[s]])]
        assert r["ece_per_site_by_seed"][s] == pytest.approx(own)
        assert r["ece_per_site"][s] == pytest.approx(np.mean(own))  # the mean over seeds
        assert r["ece_true_risk_per_site"][s] == pytest.approx(own[0])  # the floor: the truth's own ECE
        assert r["ece_excess_per_site"][s] == pytest.approx(np.mean(own) - own[0])
        lo, hi = r["ece_excess_per_site_ci95"][s]
        assert lo <= r["ece_excess_per_site"][s] <= hi
    assert r["n_seeds"] == 2 and r["n_test_per_site"] == {"a": 1000, "b": 1000}
    assert sum(sum(v["stated"]["n"]) for v in r["reliability_per_site"].values()) == 2 * len(y)
    worse = calibration_over_seeds(sites, y, risk, [shifted, shifted])
    assert all(lo > 0 for lo, _ in worse["ece_excess_per_site_ci95"].values())  # +0.15 on every case, every seed
    assert worse["ece_within_target_per_site"] == {"a": False, "b": False}
    exact = calibration_over_seeds(sites, y, risk, [risk, risk])
    assert exact["ece_excess_per_site"] == {"a": 0.0, "b": 0.0}
    assert exact["ece_excess_per_site_ci95"] == {"a": [0.0, 0.0], "b": [0.0, 0.0]}
    assert exact["ece_within_target_per_site"] == {"a": True, "b": True}


def _recs(shares: list[float], random_shares: list[float], ranks: list[bool]) -> list[dict]:
    recs = []
    for i, (s, r) in enumerate(zip(shares, random_shares, strict=True)):
        recs.append({"case_id": f"m{i}", "ct_top_share": s, "ct_top_share_random": r,
                     "deletion_ct": {"attributed": 0.1 * i, "random": 0.5}})
    recs += [{"case_id": f"n{i}", "note_rank": k} for i, k in enumerate(ranks)]
    return recs


def test_explanation_checks_are_the_mean_over_seeds_with_paired_gaps() -> None:
    seed0 = _recs([0.9, 0.6, 0.2, 0.7], [0.1, 0.6, 0.0, 0.0], [True, True, False])  # hits 3/4, random 1/4
    seed1 = _recs([0.9, 0.1, 0.2, 0.7], [0.1, 0.0, 0.0, 0.0], [True, False, False])  # hits 2/4, random 0/4
    aggregates = [{"ct_hit_rate": 0.75, "ct_hit_rate_random": 0.25, "note_rank_rate": 2 / 3, "explain_ms_cpu": 100.0,
                   "gate_mean": {"ct": 0.4}},
                  {"ct_hit_rate": 0.5, "ct_hit_rate_random": 0.0, "note_rank_rate": 1 / 3, "explain_ms_cpu": 300.0,
                   "gate_mean": {"ct": 0.6}}]
    out = explanations_over_seeds([seed0, seed1], aggregates)
    assert out["ct_hit_rate"] == pytest.approx(0.625) and out["ct_hit_rate_random"] == pytest.approx(0.125)
    assert out["ct_hit_rate_gap"] == pytest.approx(0.5)
    assert out["note_rank_rate"] == pytest.approx(0.5)
    assert out["deletion_auc"] == pytest.approx({"attributed": 0.15, "random": 0.5})
    assert out["explain_ms_cpu"] == pytest.approx(200.0) and out["gate_mean"] == {"ct": pytest.approx(0.5)}
    lo, hi = out["ct_hit_rate_ci95"]
    assert lo <= 0.625 <= hi and out["n_seeds"] == 2
    assert out["by_seed"]["ct_hit_rate"] == [0.75, 0.5]


def test_coverage_is_averaged_and_each_seed_is_kept() -> None:
    def seed(rate: float, inside: bool) -> dict:
        return {"coverage_target": 0.9, "coverage": {"a": {"benign": [9, 10]}}, "coverage_all_inside": inside,
                "coverage_check": {"a": {"benign": {"rate": rate, "interval95": [0.8, 1.0], "inside": inside}}},
                "set_size_mean": 1.2, "refer_reasons": {"both_classes": 2, "empty_set": 0}}

    out = coverage_over_seeds([seed(0.9, True), seed(0.7, False)], [np.array([1, 0, 0, 0]), np.array([1, 1, 0, 0])])
    assert out["coverage_check"]["a"]["benign"]["rate"] == pytest.approx(0.8)
    assert out["coverage_check"]["a"]["benign"]["inside"] and out["coverage_all_inside"]
    assert out["coverage_all_inside_by_seed"] == [True, False]
    assert out["refer_rate"] == pytest.approx(0.375)


def test_explained_rows_spread_over_the_whole_cohort() -> None:
    rows = explained_rows(2000, 120)
    assert len(rows) == 120 and rows[0] == 0 and rows[-1] == 1999
    assert max(np.diff(rows)) <= 17  # every site's block of 500 gets its share
    assert explained_rows(30, 120) == list(range(30))
