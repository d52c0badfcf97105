"""Sample one patient's true variables from a site's distributions, then the outcome from the risk function.

Sampling is cheap and seeded per case, so the benchmarks can recompute a preset's truth without rendering a
single slice, and the truth they see is the one the generator writes.
"""

from __future__ import annotations

import hashlib

import numpy as np

from workbench.cohort.risk import sigmoid, truth_logit
from workbench.cohort.spec import LOBES, PatientTruth, SiteProfile

SPLITS = (("train", 0.55), ("val", 0.10), ("calib", 0.15), ("test", 0.20))
LOBE_P = np.array([0.30, 0.10, 0.18, 0.25, 0.17])  # RUL RML RLL LUL LLL: upper lobes 55%
TYPE_P = {"solid": 0.78, "part_solid": 0.08, "non_solid": 0.14}
PRIOR_CANCER_SITES = ("breast", "prostate", "colon", "melanoma", "renal cell", "bladder", "head and neck")


def case_split(seed: int, site: str, case_id: str) -> str:
    """The case's split, fixed by a hash of (seed, site, case id): same case, same split, in every run."""
    digest = hashlib.sha256(f"{seed}:{site}:{case_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if u < edge:
            return name
    return SPLITS[-1][0]


def case_rng(seed: int, site_index: int, case_index: int, stream: int = 0) -> np.random.Generator:
    """Independent generator per case (and per stream: 0 truth, 1 identity/note, 2 image)."""
    return np.random.default_rng([seed, site_index, case_index, stream])


def sample_truth(site: SiteProfile, case_id: str, rng: np.random.Generator, *, split: str = "train") -> PatientTruth:
    """Draw every true variable of one case, then its risk and label."""
    age = int(round(float(np.clip(rng.normal(site.age_mean, 9.0), 40, 90))))
    female = bool(rng.random() < site.female_p)
    family_history = bool(rng.random() < site.family_history_p)
    ever = bool(rng.random() < site.ever_smoker_p)
    if ever:
        smoking = "current" if rng.random() < site.current_smoker_share else "former"
        pack_years = int(np.clip(round(rng.lognormal(np.log(30.0), 0.5)), 5, 120))
    else:
        smoking, pack_years = "never", 0
    prior_cancer = bool(rng.random() < site.prior_cancer_p)
    prior_cancer_site = str(rng.choice(PRIOR_CANCER_SITES)) if prior_cancer else None
    if rng.random() < site.prior_ct_p:
        prior_ct = str(rng.choice(["stable_2y", "stable_short", "growing"], p=[0.45, 0.25, 0.30]))
        low, high = {"stable_2y": (2.0, 5.0), "stable_short": (0.3, 1.5), "growing": (0.3, 2.5)}[prior_ct]
        prior_ct_years: float | None = round(float(rng.uniform(low, high)), 1)
    else:
        prior_ct, prior_ct_years = "none", None

    diameter = float(np.clip(rng.lognormal(site.diameter_log_mean, site.diameter_log_sd), 3.0, 40.0))
    diameter = round(diameter, 1)
    nodule_type = str(rng.choice(list(TYPE_P), p=list(TYPE_P.values())))
    # Spiculation rises with size: ~4% at 5 mm, ~12% at 10 mm, ~45% at 20 mm.
    spiculated = bool(rng.random() < float(sigmoid(-3.3 + 0.22 * (diameter - 5.0))))
    lobe = str(rng.choice(LOBES, p=LOBE_P))
    nodule_count = int(1 + rng.poisson(1.5))
    emphysema = bool(rng.random() < site.emphysema_p)
    emphysema_in_note = emphysema and bool(rng.random() < site.emphysema_in_note_p)

    has_note = bool(rng.random() >= site.missing_note_p)
    has_ct = bool(rng.random() >= site.missing_ct_p)
    if not has_note and not has_ct:
        has_ct = True  # a case with neither modality is not a case

    truth = PatientTruth(
        case_id=case_id,
        site=site.name,
        split=split,
        age=age,
        female=female,
        family_history=family_history,
        smoking=smoking,
        pack_years=pack_years,
        prior_cancer=prior_cancer,
        prior_cancer_site=prior_cancer_site,
        prior_ct=prior_ct,
        prior_ct_years=prior_ct_years,
        diameter_mm=diameter,
        nodule_type=nodule_type,
        spiculated=spiculated,
        lobe=lobe,
        nodule_count=nodule_count,
        emphysema=emphysema,
        emphysema_in_note=emphysema_in_note,
        has_ct=has_ct,
        has_note=has_note,
        logit=0.0,
        risk=0.0,
        label=0,
    )
    # Outcome last, from the one risk function; the label's draw comes after every variable's.
    truth.logit = round(truth_logit(truth), 6)
    truth.risk = float(sigmoid(truth.logit))
    truth.label = int(rng.random() < truth.risk)
    return truth


def case_id_for(site: SiteProfile, index: int) -> str:
    return f"{site.name}_{index:04d}"


def sample_site_truths(site: SiteProfile, site_index: int, n: int, seed: int) -> list[PatientTruth]:
    """Truth of a whole site, identical to what ``generate`` writes for the same seed."""
    out = []
    for i in range(n):
        cid = case_id_for(site, i)
        out.append(sample_truth(site, cid, case_rng(seed, site_index, i, 0), split=case_split(seed, site.name, cid)))
    return out
