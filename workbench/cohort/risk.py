"""The one true risk function of the synthetic cohort, the same at every site.

Log-odds of malignancy =
  Brock / PanCan full model with spiculation (McWilliams et al., NEJM 2013)
  + Mayo Clinic history terms (Swensen et al., Arch Intern Med 1997): ever smoker, prior extrathoracic cancer
  + prior-imaging terms (this project's assumption, after Fleischner guidance): -2.5 when a CT at least two
    years earlier showed the nodule unchanged, +2.0 when it has grown since a prior CT
  + ENRICHMENT_SHIFT, a constant that lifts prevalence to about 25% (screening-like cohorts are ~1-5%; a
    decision-support benchmark needs enough positives). Sites differ in who they see, never in this function.
"""

from __future__ import annotations

import math

import numpy as np

from workbench.cohort.spec import PatientTruth

# Brock full model with spiculation: coefficients as published.
BROCK_INTERCEPT = -6.7892
BROCK_AGE = 0.0287  # per year above 62
BROCK_FEMALE = 0.6011
BROCK_FAMILY_HISTORY = 0.2961
BROCK_EMPHYSEMA = 0.2953
BROCK_SIZE = -5.3854  # times ((diameter_mm / 10) ** -0.5 - 1.58113883)
BROCK_PART_SOLID = 0.377
BROCK_NON_SOLID = -0.1276
BROCK_UPPER_LOBE = 0.6581
BROCK_COUNT = -0.0824  # times (nodule count - 4)
BROCK_SPICULATION = 0.7729
# Mayo Clinic model history terms.
MAYO_EVER_SMOKER = 0.7917
MAYO_PRIOR_CANCER = 1.3388
# Prior imaging (assumption, stated in the data card).
PRIOR_CT_STABLE_2Y = -2.5
PRIOR_CT_GROWING = 2.0
# Enrichment: solved once so that the mean risk over the default sites is about 0.26
# (see tests/cohort/test_risk.py, which re-derives prevalence from sampled cohorts).
ENRICHMENT_SHIFT = 1.4


def brock_logit(
    *,
    age: float,
    female: bool,
    family_history: bool,
    emphysema: bool,
    diameter_mm: float,
    nodule_type: str,
    upper_lobe: bool,
    nodule_count: int,
    spiculated: bool,
) -> float:
    """Brock (PanCan) full-model log-odds with spiculation, exactly as published (no enrichment)."""
    size_term = (diameter_mm / 10.0) ** -0.5 - 1.58113883
    return (
        BROCK_INTERCEPT
        + BROCK_AGE * (age - 62.0)
        + BROCK_FEMALE * float(female)
        + BROCK_FAMILY_HISTORY * float(family_history)
        + BROCK_EMPHYSEMA * float(emphysema)
        + BROCK_SIZE * size_term
        + BROCK_PART_SOLID * float(nodule_type == "part_solid")
        + BROCK_NON_SOLID * float(nodule_type == "non_solid")
        + BROCK_UPPER_LOBE * float(upper_lobe)
        + BROCK_COUNT * (nodule_count - 4)
        + BROCK_SPICULATION * float(spiculated)
    )


def _brock_of(t: PatientTruth) -> float:
    return brock_logit(
        age=t.age,
        female=t.female,
        family_history=t.family_history,
        emphysema=t.emphysema,
        diameter_mm=t.diameter_mm,
        nodule_type=t.nodule_type,
        upper_lobe=t.upper_lobe,
        nodule_count=t.nodule_count,
        spiculated=t.spiculated,
    )


def truth_logit(t: PatientTruth) -> float:
    """The cohort's full log-odds: Brock + Mayo history + prior-CT terms + enrichment shift."""
    history = MAYO_EVER_SMOKER * float(t.ever_smoker) + MAYO_PRIOR_CANCER * float(t.prior_cancer)
    prior = PRIOR_CT_STABLE_2Y * float(t.prior_ct == "stable_2y") + PRIOR_CT_GROWING * float(t.prior_ct == "growing")
    return _brock_of(t) + history + prior + ENRICHMENT_SHIFT


def sigmoid(x: float | np.ndarray) -> float | np.ndarray:
    if isinstance(x, np.ndarray):
        return 1.0 / (1.0 + np.exp(-x))
    return 1.0 / (1.0 + math.exp(-x))


def brock_probability(t: PatientTruth) -> float:
    """Today's clinical calculator on perfect measurements: Brock alone (no history, prior CT or shift)."""
    return float(sigmoid(_brock_of(t)))
