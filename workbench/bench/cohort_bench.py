"""``workbench bench cohort``: the accuracy ceilings and prevalence the truth allows, per docs/architecture.md §5.

``truth`` picks the risk function (brock | shifted). For a shifted truth it also reports ``ct_only_taught`` and
``notes_only_taught``: each modality's ceiling from only the variables the readers are pretrained on, in Brock's
form (the brock truth's ceiling features), so the distance to ``ct_only_ceiling`` / ``notes_only_ceiling`` is
what knowing only Brock's variables costs, and ``both_taught`` against ``bayes`` the same for the two together.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from workbench.bench.common import envelope
from workbench.cohort.ceilings import ceilings, ct_features, note_features, truth_of
from workbench.cohort.config import CohortConfig
from workbench.cohort.generate import read_truth, sites_for
from workbench.cohort.sample import sample_site_truths
from workbench.cohort.spec import TRUTHS, PatientTruth
from workbench.errors import CohortError
from workbench.metrics import auroc, fit_logistic, predict_logistic


def full_preset_truth(seed: int = 0, preset: str = "full", truth: str = "brock") -> list[PatientTruth]:
    """The truth ``workbench cohort --preset full --truth TRUTH`` writes, sampled without rendering a slice."""
    config = CohortConfig(preset=preset, seed=seed, truth=truth)
    truths: list[PatientTruth] = []
    for i, site in enumerate(sites_for(config)):
        truths += sample_site_truths(site, i, config.n_patients, seed, truth)
    return truths


def taught_ceilings(truths: list[PatientTruth]) -> dict[str, float]:
    """Ceilings from only the readers' pretraining variables in Brock's form, whatever the records' truth."""
    train = [t for t in truths if t.split == "train"]
    test = [t for t in truths if t.split == "test"]
    y_train, y_test = np.array([t.label for t in train]), np.array([t.label for t in test])

    def as_brock(feats):  # the brock truth's feature form of a case of any truth
        return lambda t: feats(replace(t, truth="brock"))

    out = {}
    for key, feats in (("ct_only_taught", as_brock(ct_features)), ("notes_only_taught", as_brock(note_features)),
                       ("both_taught", lambda t: as_brock(ct_features)(t) + as_brock(note_features)(t))):
        w = fit_logistic(np.array([feats(t) for t in train]), y_train)
        out[key] = auroc(y_test, predict_logistic(w, np.array([feats(t) for t in test])))
    return out


def run_cohort_bench(*, cohort: str | Path | None = None, seed: int = 0, preset: str = "full",
                     truth: str = "brock") -> dict:
    """Ceilings, prevalence and per-site calibration of a cohort's truth file, or of the preset's sampled truth
    under ``truth``. A cohort folder must follow ``truth`` (its records say which), so a result never carries a
    truth name its numbers do not have."""
    start = time.perf_counter()
    if truth not in TRUTHS:
        raise CohortError(f"unknown truth {truth!r}: choose one of {', '.join(TRUTHS)}")
    truths = read_truth(cohort) if cohort else full_preset_truth(seed, preset, truth)
    if (found := truth_of(truths)) != truth:
        raise CohortError(f"{cohort}: its truth.jsonl follows the {found} truth, not {truth} (pass --truth {found})")
    test = [t for t in truths if t.split == "test"]
    result: dict = {**ceilings(truths, truth), "n_cases": len(truths), "n_test": len(test)}
    if truth != "brock":
        result.update(taught_ceilings(truths))
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
    result["truth"] = truth
    result["source"] = str(cohort) if cohort else f"sampled truth of preset {preset}, seed {seed} (no rendering)"
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()},
            **envelope(preset if not cohort else "custom", time.perf_counter() - start)}
