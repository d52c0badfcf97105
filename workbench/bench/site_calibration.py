"""Calibration per site of the risk a report states, beside the floor the truth's own risk reaches on the same cases.

Why per site: a pooled ECE over four hospitals (0.04 on the full preset) hides that each site's own test cases
were worse calibrated (0.08-0.13): per-site errors in opposite directions cancel when pooled, and a clinician sees
one site's cases. Why the true risk beside it: with 100 test cases a site's ECE is not 0 even for a perfect model
(binning and label noise); the truth's risk (``truth.jsonl`` ``risk``) on the same cases is the floor the estimate
can reach on that many cases, so the gap between the two, not the ECE alone, is the model's miscalibration.

The stated risk is ``Assessment.probability``: the one risk every report states (the site's
stated-risk calibration, ``workbench.runtime.stated_risk``; docs/architecture.md §8), from
``RunUncertainty.assess`` with the case's own site's calibrators, as ``workbench.explain.case`` computes it.
Everything is kept in plain dicts keyed by site (and, for the reliability diagrams, lists per bin), so several
seeds' results can be averaged key by key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_write
from workbench.metrics import ece, reliability_bins

N_BINS = 10


def stated_assessments(unc: Any, run: Path, pred: dict[str, np.ndarray], test: Any) -> list[Any]:
    """Each test case's ``Assessment`` (row order of ``test``), from its own site's calibrators and similar-case
    index: the risk, interval, set and refer flag a report of that case states."""
    from workbench.runtime.run_uncertainty import site_index

    sites = np.array(test.sites)
    out: list[Any] = [None] * len(sites)
    for s in sorted(set(test.sites)):
        rows = np.flatnonzero(sites == s)
        for i, a in zip(rows, unc.assess(s, pred["logits"][rows], pred["fused"][rows], site_index(run, s),
                                             None if pred.get("nodule") is None else pred["nodule"][rows]), strict=True):
            out[i] = a
    return out


def site_calibration(sites: list[str], y: np.ndarray, stated: np.ndarray, true_risk: np.ndarray,
                     n_bins: int = N_BINS) -> dict[str, Any]:
    """ECE of the stated risk and of the true risk per site (and pooled), test cases per site, and per site the
    reliability bins of both (``workbench.metrics.reliability_bins``)."""
    s_arr = np.asarray(sites)
    y, stated, true_risk = (np.asarray(a, dtype=float) for a in (y, stated, true_risk))
    names = sorted(set(sites))
    per = {s: s_arr == s for s in names}
    return {
        "ece_per_site": {s: ece(y[m], stated[m], n_bins) for s, m in per.items()},
        "ece_true_risk_per_site": {s: ece(y[m], true_risk[m], n_bins) for s, m in per.items()},
        "ece_true_risk": ece(y, true_risk, n_bins),
        "n_test_per_site": {s: int(m.sum()) for s, m in per.items()},
        "malignant_test_per_site": {s: int(y[m].sum()) for s, m in per.items()},
        "reliability_per_site": {s: {"stated": reliability_bins(y[m], stated[m], n_bins),
                                     "true_risk": reliability_bins(y[m], true_risk[m], n_bins)}
                                 for s, m in per.items()},
    }


def reliability_figure(result: dict[str, Any], path: Path) -> Path:
    """One panel per site: observed frequency against the mean stated risk in each bin (marker area and label: the
    bin's count), and the true risk's curve on the same cases for reference; the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(result["reliability_per_site"])
    fig, axes = plt.subplots(1, max(len(sites), 1), figsize=(3.3 * max(len(sites), 1), 3.6), dpi=110, squeeze=False)
    for ax, site in zip(axes[0], sites, strict=False):
        ax.plot([0, 1], [0, 1], color="k", lw=0.7, ls="--", label="perfect")
        for key, colour, label in (("true_risk", "tab:gray", "true risk"), ("stated", "tab:red", "stated risk")):
            r = result["reliability_per_site"][site][key]
            xs = [m for m, n in zip(r["mean_p"], r["n"], strict=True) if n]
            ys = [o for o, n in zip(r["observed"], r["n"], strict=True) if n]
            ns = [n for n in r["n"] if n]
            total = max(sum(ns), 1)  # marker area by the bin's share of cases: seeds pooled or not, the same scale
            ax.plot(xs, ys, color=colour, lw=1.2, alpha=0.9 if key == "stated" else 0.7)
            ax.scatter(xs, ys, s=[8 + 600 * n / total for n in ns], color=colour, alpha=0.6, zorder=3, label=label)
            if key == "stated":
                for x, yv, n in zip(xs, ys, ns, strict=True):
                    ax.annotate(str(n), (x, yv), textcoords="offset points", xytext=(4, -9), fontsize=6, color=colour)
        ece_s = result["ece_per_site"][site]
        ece_t = result["ece_true_risk_per_site"][site]
        ax.set_title(f"{site} (n={result['n_test_per_site'][site]})\nECE stated {ece_s:.3f}, true risk {ece_t:.3f}",
                     fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("mean risk in bin")
        ax.set_ylabel("observed malignant share")
        ax.legend(fontsize=6, loc="upper left", markerscale=0.3)
    n_seeds = int(result.get("n_seeds", 1))
    pooled = f"; {n_seeds} seeds' risks pooled, so a bin counts each case once per seed" if n_seeds > 1 else ""
    fig.suptitle(f"evaluation cases per site: the risk a report states vs what happened (bins of 0.1; numbers: "
                 f"cases{pooled})", fontsize=9)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


__all__ = ["N_BINS", "reliability_figure", "site_calibration", "stated_assessments"]
