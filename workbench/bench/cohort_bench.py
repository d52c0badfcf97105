"""``workbench bench cohort``: the accuracy ceilings and prevalence the truth allows, per docs/architecture.md §5."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from workbench.bench.common import envelope
from workbench.cohort.ceilings import ceilings
from workbench.cohort.config import CohortConfig
from workbench.cohort.generate import read_truth, sites_for
from workbench.cohort.sample import sample_site_truths
from workbench.cohort.spec import PatientTruth
from workbench.metrics import fit_logistic


def full_preset_truth(seed: int = 0, preset: str = "full") -> list[PatientTruth]:
    """The truth ``workbench cohort --preset full`` writes, sampled without rendering a slice."""
    config = CohortConfig(preset=preset, seed=seed)
    truths: list[PatientTruth] = []
    for i, site in enumerate(sites_for(config)):
        truths += sample_site_truths(site, i, config.n_patients, seed)
    return truths


def run_cohort_bench(*, cohort: str | Path | None = None, seed: int = 0, preset: str = "full") -> dict:
    start = time.perf_counter()
    truths = read_truth(cohort) if cohort else full_preset_truth(seed, preset)
    test = [t for t in truths if t.split == "test"]
    result: dict = {**ceilings(truths), "n_cases": len(truths), "n_test": len(test)}
    per_site: dict[str, dict] = {}
    for site in sorted({t.site for t in truths}):
        st = [t for t in truths if t.site == site]
        y = np.array([t.label for t in st])
        logit = np.array([[t.logit] for t in st])
        w = fit_logistic(logit, y)  # slope ~1, intercept ~0 when labels follow the one risk function
        per_site[site] = {
            "n": len(st),
            "prevalence": round(float(y.mean()), 4),
            "mean_true_risk": round(float(np.mean([t.risk for t in st])), 4),
            "calibration_intercept": round(float(w[0]), 3),
            "calibration_slope": round(float(w[1]), 3),
        }
    result["prevalence"] = {s: v["prevalence"] for s, v in per_site.items()}
    result["per_site"] = per_site
    result["splits"] = {s: sum(t.split == s for t in truths) for s in ("train", "val", "calib", "test")}
    result["source"] = str(cohort) if cohort else f"sampled truth of preset {preset}, seed {seed} (no rendering)"
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()},
            **envelope(preset if not cohort else "custom", time.perf_counter() - start)}
