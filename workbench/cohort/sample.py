"""Sample one patient's true variables from a site's distributions, then the outcome from the risk function.

Sampling is cheap and seeded per case, so the benchmarks can recompute a preset's truth without rendering a
single slice, and the truth they see is the one the generator writes.

The ``shifted`` truth (``risk_shifted.py``) has two variables of its own (a bubbly lucency in the CT, an asbestos
exposure in the note). They come from their own stream (``SHIFTED_STREAM``), after every Brock variable is drawn
and before the label, whose draw stays where it was: a brock case is the same with or without this truth, and a
shifted case shares every Brock variable, and the label's uniform draw, with the brock case of the same seed.
"""

from __future__ import annotations

import hashlib

import numpy as np

from workbench.cohort.risk import sigmoid, truth_logit
from workbench.cohort.risk_shifted import shifted_logit
from workbench.cohort.spec import LOBES, TRUTHS, PatientTruth, SiteProfile
from workbench.errors import CohortError

SPLITS = (("train", 0.55), ("val", 0.10), ("calib", 0.15), ("test", 0.20))
LOBE_P = np.array([0.30, 0.10, 0.18, 0.25, 0.17])  # RUL RML RLL LUL LLL: upper lobes 55%
TYPE_P = {"solid": 0.78, "part_solid": 0.08, "non_solid": 0.14}
PRIOR_CANCER_SITES = ("breast", "prostate", "colon", "melanoma", "renal cell", "bladder", "head and neck")
SHIFTED_STREAM = 3  # case_rng stream of the shifted truth's own variables (0 truth, 1 note, 2 image)
# Shifted truth only. Bubbly lucency needs room for air pockets a scanner resolves: none under 6 mm, then more
# often in part-solid nodules (pseudocavitation is an adenocarcinoma sign). Asbestos: men more often (trades).
LUCENCY_MIN_MM = 6.0
LUCENCY_P = {"solid": 0.20, "part_solid": 0.40, "non_solid": 0.25}
ASBESTOS_P = {False: 0.15, True: 0.06}  # by female
ASBESTOS_JOBS = ("shipyard pipefitter", "insulation installer", "brake mechanic", "boilermaker",
                 "demolition worker", "plumber", "power plant maintenance worker")


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
    """Independent generator per case (and per stream: 0 truth, 1 identity/note, 2 image, 3 shifted truth)."""
    return np.random.default_rng([seed, site_index, case_index, stream])


def shifted_variables(diameter_mm: float, nodule_type: str, female: bool, rng: np.random.Generator
                      ) -> tuple[bool, str | None]:
    """(bubbly lucency, asbestos job or None) of a shifted case; always three draws, so the stream stays aligned."""
    u_lucency, u_asbestos, u_job = rng.random(3)
    lucency = diameter_mm >= LUCENCY_MIN_MM and bool(u_lucency < LUCENCY_P[nodule_type])
    job = ASBESTOS_JOBS[int(u_job * len(ASBESTOS_JOBS))] if u_asbestos < ASBESTOS_P[female] else None
    return lucency, job


def sample_truth(site: SiteProfile, case_id: str, rng: np.random.Generator, *, split: str = "train",
                 truth: str = "brock", extra_rng: np.random.Generator | None = None) -> PatientTruth:
    """Draw every true variable of one case, then its risk and label under ``truth`` (one of ``TRUTHS``).

    ``extra_rng`` (the case's ``SHIFTED_STREAM``) is needed by the shifted truth only; brock never touches it."""
    if truth not in TRUTHS:
        raise CohortError(f"unknown truth {truth!r}: choose one of {', '.join(TRUTHS)}")
    if truth != "brock" and extra_rng is None:
        raise CohortError(f"the {truth} truth draws its own variables: pass extra_rng (stream {SHIFTED_STREAM})")
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

    case = PatientTruth(
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
        truth=truth,
    )
    if case.truth != "brock" and extra_rng is not None:
        case.bubbly_lucency, case.asbestos_job = shifted_variables(diameter, nodule_type, female, extra_rng)
    # Outcome last, from the cohort's risk function; the label's draw comes after every variable's.
    case.logit = round(truth_logit(case) if case.truth == "brock" else shifted_logit(case), 6)
    case.risk = float(sigmoid(case.logit))
    case.label = int(rng.random() < case.risk)
    return case


def case_id_for(site: SiteProfile, index: int) -> str:
    return f"{site.name}_{index:04d}"


def case_truth(site: SiteProfile, site_index: int, case_index: int, seed: int, truth: str = "brock") -> PatientTruth:
    """One case's truth exactly as ``generate`` writes it: its streams, split and risk function."""
    cid = case_id_for(site, case_index)
    extra = case_rng(seed, site_index, case_index, SHIFTED_STREAM) if truth != "brock" else None
    return sample_truth(site, cid, case_rng(seed, site_index, case_index, 0), split=case_split(seed, site.name, cid),
                        truth=truth, extra_rng=extra)


def sample_site_truths(site: SiteProfile, site_index: int, n: int, seed: int, truth: str = "brock"
                       ) -> list[PatientTruth]:
    """Truth of a whole site, identical to what ``generate`` writes for the same seed and truth."""
    return [case_truth(site, site_index, i, seed, truth) for i in range(n)]
