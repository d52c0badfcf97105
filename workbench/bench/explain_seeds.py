"""``bench explain`` over training seeds: each seed's figures, then their mean with a 95% interval.

Every seed's FedAvg model is calibrated on the training cohort's own splits and then scored on the same cases of
the evaluation cohort, so each figure is a per-case quantity seen through several models, and
``workbench.bench.seeds`` gives its mean over seeds and a hierarchical (seeds and cases) bootstrap interval:
- calibration per site: the ECE of the risk a report states (``Figure`` with ``ece`` as the metric), the true
  risk's own ECE on the same cases (the floor: one "seed", the truth), and the paired excess (stated minus floor,
  the same case resamples for both), which is the figure the target reads (within 0.03 at every site);
- the explanation checks on the explained subset: the CT hit rate (share of malignant CT cases whose top 1% |IG|
  voxels lie at least half inside the nodule), the same for the weight-randomised model and their paired gap, the
  note rank rate, and the deletion areas. Which cases enter each check depends on the truth and the inputs, not
  on the model, so every seed has the same case list and the cases are resampled together.
The remaining explanation figures (timings, medians, gate shares) are the mean of the seeds' own values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.bench.seeds import Figure, put
from workbench.bench.site_calibration import site_calibration
from workbench.metrics import ece

ECE_EXCESS_TARGET = 0.03  # issue 16: per-site ECE within 0.03 of the true risk's on the same cases


def _hit(_: np.ndarray, v: np.ndarray) -> float:
    return float(np.mean(v >= 0.5))


def _mean(_: np.ndarray, v: np.ndarray) -> float:
    return float(np.mean(v))


def calibration_over_seeds(sites: Sequence[str], y: np.ndarray, true_risk: np.ndarray,
                           stated: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per-site ECE of each seed's stated risk on the same evaluation cases, its floor and the paired excess,
    as means with ``_ci95`` siblings; and reliability bins of all seeds' risks together (for the figure)."""
    s_arr = np.asarray(sites)
    y, true_risk = np.asarray(y, dtype=float), np.asarray(true_risk, dtype=float)
    stated = [np.asarray(p, dtype=float) for p in stated]
    masks = {s: s_arr == s for s in sorted(set(s_arr.tolist()))}
    out: dict[str, Any] = {}
    put(out, "ece_per_site", {s: Figure(y[m], [p[m] for p in stated], ece) for s, m in masks.items()})
    put(out, "ece_true_risk_per_site", {s: Figure(y[m], [true_risk[m]], ece) for s, m in masks.items()})
    put(out, "ece_excess_per_site", {s: Figure(y[m], [p[m] for p in stated], ece,
                                              baseline=[true_risk[m]] * len(stated)) for s, m in masks.items()})
    put(out, "ece", Figure(y, stated, ece))
    out["ece_true_risk"] = ece(y, true_risk)
    out["ece_per_site_by_seed"] = {s: [ece(y[m], p[m]) for p in stated] for s, m in masks.items()}
    out["ece_excess_target"] = ECE_EXCESS_TARGET
    out["ece_within_target_per_site"] = {s: bool(v <= ECE_EXCESS_TARGET) for s, v in out["ece_excess_per_site"].items()}
    together = site_calibration(list(sites) * len(stated), np.tile(y, len(stated)), np.concatenate(stated),
                                np.tile(true_risk, len(stated)))
    out["reliability_per_site"] = together["reliability_per_site"]  # every seed's cases, pooled: the diagram's bins
    out["n_test_per_site"] = {s: int(m.sum()) for s, m in masks.items()}
    out["malignant_test_per_site"] = {s: int(y[m].sum()) for s, m in masks.items()}
    out["n_seeds"] = len(stated)
    return out


def coverage_over_seeds(per_seed: Sequence[dict[str, Any]], refer: Sequence[np.ndarray]) -> dict[str, Any]:
    """Conformal coverage per site and class (mean rate over seeds against each n's binomial band), whether
    every seed's was inside its band, and the refer rate with its interval."""
    first = per_seed[0]["coverage_check"]
    check: dict[str, dict[str, Any]] = {}
    for site, classes in first.items():
        check[site] = {}
        for cls, v in classes.items():
            rates = [p["coverage_check"][site][cls]["rate"] for p in per_seed]
            rate = float(np.mean(rates)) if all(r is not None for r in rates) else None
            lo, hi = v["interval95"]
            check[site][cls] = {"rate": rate, "interval95": [lo, hi], "inside": rate is None or lo <= rate <= hi}
    out: dict[str, Any] = {"coverage_target": per_seed[0]["coverage_target"], "coverage_check": check,
                           "coverage_all_inside": all(v["inside"] for d in check.values() for v in d.values()),
                           "coverage_all_inside_by_seed": [bool(p["coverage_all_inside"]) for p in per_seed],
                           "coverage_by_seed": [p["coverage"] for p in per_seed],
                           "set_size_mean": float(np.mean([p["set_size_mean"] for p in per_seed])),
                           "refer_reasons": {k: float(np.mean([p["refer_reasons"][k] for p in per_seed]))
                                             for k in per_seed[0]["refer_reasons"]}}
    n = len(refer[0])
    put(out, "refer_rate", Figure(np.zeros(n), [np.asarray(r, dtype=float) for r in refer], _mean))
    return out


def _aligned(recs_by_seed: Sequence[Sequence[dict[str, Any]]], key: str) -> list[str]:
    """The case ids that carry ``key`` in every seed's records (the same list in practice: module docstring)."""
    ids = [r["case_id"] for r in recs_by_seed[0] if r.get(key) is not None]
    present = [{r["case_id"] for r in recs if r.get(key) is not None} for recs in recs_by_seed]
    return [c for c in ids if all(c in p for p in present)]


def _column(recs_by_seed: Sequence[Sequence[dict[str, Any]]], ids: list[str], get: Any) -> list[np.ndarray]:
    by_id = [{r["case_id"]: r for r in recs} for recs in recs_by_seed]
    return [np.array([float(get(b[c])) for c in ids]) for b in by_id]


def _mean_leaves(values: Sequence[Any]) -> Any:
    """The element-wise mean of the seeds' own aggregate dicts (None where any seed has None)."""
    v0 = values[0]
    if isinstance(v0, dict):
        return {k: _mean_leaves([v[k] for v in values]) for k in v0}
    if isinstance(v0, list):
        return [_mean_leaves([v[i] for v in values]) for i in range(len(v0))]
    if any(v is None for v in values):
        return None
    if isinstance(v0, bool):
        return all(values)
    return float(np.mean(values))


def explanations_over_seeds(recs_by_seed: Sequence[Sequence[dict[str, Any]]],
                            aggregates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The explanation checks over seeds (module docstring): ``aggregates`` are each seed's own
    ``explain_bench._aggregate`` of its records."""
    out: dict[str, Any] = _mean_leaves(list(aggregates))
    out["by_seed"] = {k: [a[k] for a in aggregates] for k in ("ct_hit_rate", "ct_hit_rate_random", "note_rank_rate")}
    mal = _aligned(recs_by_seed, "ct_top_share")
    if mal:
        share = _column(recs_by_seed, mal, lambda r: r["ct_top_share"])
        share_r = _column(recs_by_seed, mal, lambda r: r["ct_top_share_random"])
        z = np.zeros(len(mal))
        put(out, "ct_hit_rate", Figure(z, share, _hit))
        put(out, "ct_hit_rate_random", Figure(z, share_r, _hit))
        put(out, "ct_hit_rate_gap", Figure(z, share, _hit, baseline=share_r))
        put(out, "deletion_auc", {
            "attributed": Figure(z, _column(recs_by_seed, mal, lambda r: r["deletion_ct"]["attributed"]), _mean),
            "random": Figure(z, _column(recs_by_seed, mal, lambda r: r["deletion_ct"]["random"]), _mean)})
    ranked = _aligned(recs_by_seed, "note_rank")
    if ranked:
        put(out, "note_rank_rate", Figure(np.zeros(len(ranked)), _column(recs_by_seed, ranked,
                                                                         lambda r: r["note_rank"]), _mean))
    deleted = _aligned(recs_by_seed, "deletion_note")
    if deleted:
        z = np.zeros(len(deleted))
        put(out, "deletion_auc_note", {
            "attributed": Figure(z, _column(recs_by_seed, deleted, lambda r: r["deletion_note"]["attributed"]), _mean),
            "random": Figure(z, _column(recs_by_seed, deleted, lambda r: r["deletion_note"]["random"]), _mean)})
    out["n_seeds"] = len(recs_by_seed)
    return out


COUNTERFACTUAL_TARGET = 0.9  # issue 17: the risk moves in the published direction for at least 90% of the edits


def _pair_rate(n_edits: np.ndarray, n_right: np.ndarray) -> float:
    """The share of (case, edit) pairs that moved as published, from per-case counts (cases resampled whole)."""
    total = float(np.sum(n_edits))
    return float(np.sum(n_right) / total) if total else float("nan")


def counterfactual_over_seeds(case_ids: Sequence[str], edit_names: Sequence[str], expected: np.ndarray,
                              before: Sequence[np.ndarray], after: Sequence[np.ndarray],
                              kinds: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The clinical plausibility check over seeds: one row per (case, edit) with its published direction
    (``expected``: +1 or -1), and per seed the stated risk before and after the edit.

    ``counterfactual_direction_rate`` is each seed's share of rows whose risk moved in the published direction
    (an unchanged risk did not), averaged over seeds; its interval resamples seeds and **cases** (every edit of a
    resampled case comes with it: the edits of one note share its model reading), as every ``_ci95`` of this
    benchmark does. The same per edit (``smoking_add`` ...) and per factor (``kinds`` maps a breakdown's name to
    the edit names it pools)."""
    ids = np.asarray(case_ids)
    names = np.asarray(edit_names)
    expected = np.asarray(expected, dtype=float)
    right = [np.where(expected > 0, np.asarray(a) > np.asarray(b), np.asarray(a) < np.asarray(b))
             for b, a in zip(before, after, strict=True)]
    unchanged = [np.asarray(a) == np.asarray(b) for b, a in zip(before, after, strict=True)]
    order = sorted(set(ids.tolist()))
    index = {c: i for i, c in enumerate(order)}
    row_case = np.array([index[c] for c in ids.tolist()], dtype=int)

    def figure(mask: np.ndarray) -> Figure:
        n_edits = np.bincount(row_case[mask], minlength=len(order)).astype(float)
        per_seed = [np.bincount(row_case[mask], weights=r[mask].astype(float), minlength=len(order)) for r in right]
        return Figure(n_edits, per_seed, _pair_rate)

    everything = np.ones(len(ids), dtype=bool)
    out: dict[str, Any] = {}
    put(out, "counterfactual_direction_rate", figure(everything))
    edits = sorted(set(names.tolist()))
    put(out, "counterfactual_direction_rate_by_edit", {e: figure(names == e) for e in edits})
    groups = kinds or {}
    if groups:
        put(out, "counterfactual_direction_rate_by_factor",
            {k: figure(np.isin(names, list(v))) for k, v in groups.items()})
    out["counterfactual_direction_rate_by_seed"] = [float(r.mean()) if len(r) else None for r in right]
    out["counterfactual_unchanged_share"] = float(np.mean([u.mean() for u in unchanged])) if len(ids) else None
    out["counterfactual_unchanged_share_by_edit"] = {e: float(np.mean([u[names == e].mean() for u in unchanged]))
                                                     for e in edits}
    out["counterfactual_mean_change_by_edit"] = {
        e: float(np.mean([(np.asarray(a) - np.asarray(b))[names == e].mean() for b, a in zip(before, after, strict=True)]))
        for e in edits}
    out["counterfactual_n_edits"] = {e: int((names == e).sum()) for e in edits}
    out["counterfactual_n_cases"] = len(order)
    out["counterfactual_target"] = COUNTERFACTUAL_TARGET
    out["counterfactual_within_target"] = bool(out["counterfactual_direction_rate"] >= COUNTERFACTUAL_TARGET)
    return out


__all__ = ["COUNTERFACTUAL_TARGET", "ECE_EXCESS_TARGET", "calibration_over_seeds", "counterfactual_over_seeds",
           "coverage_over_seeds", "explanations_over_seeds"]
