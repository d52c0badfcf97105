"""A second true risk function, ``shifted``: Brock's variables, related to malignancy as the published model is not.

Why it exists: the readers' label-free pretraining teaches exactly the Brock truth's variables (the CT reader:
diameter, type, spiculation, emphysema, upper lobe; the note reader: age, sex, family history, smoking status,
prior cancer, prior CT, emphysema). On the Brock truth (``risk.py``) that knowledge is the whole answer, the best
case for the readers. This truth keeps the same variables and the same prevalence range, and departs from the
published model where a real population plausibly would, so a benchmark can measure what the readers' Brock
knowledge buys and what it costs (``workbench cohort --truth shifted``).

Log-odds of malignancy =
  SHIFTED_INTERCEPT
  + Brock's age, sex, family history, upper-lobe, nodule-count and spiculation terms (published coefficients)
  + size: a logistic curve in log-diameter with its own slope and midpoint for each nodule type,
        SIZE_CURVES[type] = (height, slope, midpoint_mm):  height / (1 + exp(-slope * ln(diameter / midpoint)))
    replacing Brock's ``-5.3854 * ((d / 10) ** -0.5 - 1.58)`` and its two type terms. Departures: (1) another
    diameter curve: Brock's is concave in diameter (3 -> 5 mm adds +2.2 log-odds, 10 -> 15 mm +1.0); this one
    is flat below about 6 mm, steepest around its midpoint and saturates (solid: 3 -> 5 mm +0.2, 10 -> 15 mm
    +2.5); (2) a size x type interaction: a part-solid nodule's curve is steeper and earlier (6.5, 5.0, 9 mm:
    its solid component grows into an invasive adenocarcinoma), a non-solid one's flat and low (2.5, 1.2,
    16 mm: ground glass grows slowly and rarely kills), against the solid (6.5, 4.0, 12 mm).
  + emphysema (EMPHYSEMA, stronger than Brock's 0.2953) and prior extrathoracic cancer (Mayo's 1.3388), each
    times a per-site multiplier (SITE_MULTIPLIERS, keyed by the site's archetype in ``sites.py``): (3) site-varying
    coefficients, as when a screening programme's emphysema marks heavier damage or an oncology centre's prior
    cancers are more often ones that spread to the lung. A pooled model is misspecified at every site.
  + smoking as a dose, PACK_YEARS * ln(1 + pack_years / 10), instead of Mayo's ever-smoker indicator (pack-years
    are written in every smoker's note; the note reader is taught smoking status only)
  + the prior-imaging terms of ``risk.py`` (-2.5 stable for two years, +2.0 growing)
  + (4) BUBBLY_LUCENCY: air pockets inside the index nodule (pseudocavitation, a sign of adenocarcinoma), in the
    CT only: ``phantom.py`` renders them as air-density holes centred in the nodule; the CT reader is never
    taught them
  + (5) ASBESTOS: an occupational asbestos exposure, in the notes only: ``note_exposure.py`` writes one sentence
    naming the job; the note reader is never taught it
  + SHIFTED_ENRICHMENT, solved so that the mean risk over the default sites is about 0.27 (the Brock truth's:
    0.26), every site between 0.19 and 0.32 (tests/cohort/test_shifted_truth.py re-derives per-site prevalence
    from sampled cohorts).

The new variables are drawn in ``sample.py`` (LUCENCY_P, ASBESTOS_P) from their own per-case random stream, so a
brock cohort never draws, renders or writes them: its truth values, notes and images are exactly those made
before this truth existed.
"""

from __future__ import annotations

import math
import re

from workbench.cohort.risk import (
    BROCK_AGE,
    BROCK_COUNT,
    BROCK_FAMILY_HISTORY,
    BROCK_FEMALE,
    BROCK_SPICULATION,
    BROCK_UPPER_LOBE,
    MAYO_PRIOR_CANCER,
    PRIOR_CT_GROWING,
    PRIOR_CT_STABLE_2Y,
)
from workbench.cohort.spec import PatientTruth

SHIFTED_INTERCEPT = -6.7892  # Brock's; the size curves start near 0 at 3 mm, so SHIFTED_ENRICHMENT re-levels it
# nodule type -> (height, slope per unit log-diameter, midpoint in mm) of the size curve
SIZE_CURVES: dict[str, tuple[float, float, float]] = {
    "solid": (6.5, 4.0, 12.0),
    "part_solid": (6.5, 5.0, 9.0),  # steeper and earlier
    "non_solid": (2.5, 1.2, 16.0),  # flatter, later, lower
}
EMPHYSEMA = 0.6
PRIOR_CANCER = MAYO_PRIOR_CANCER
PACK_YEARS = 1.0  # times ln(1 + pack_years / 10): 10 py +0.69, 30 py +1.39, 60 py +1.95
BUBBLY_LUCENCY = 2.0
ASBESTOS = 1.5
# site archetype (sites.py: a referral centre, a community hospital, a screening programme, an oncology centre)
# -> (emphysema multiplier, prior-cancer multiplier). Sites past the fourth repeat their archetype's. A design
# choice, not an estimate: case-mix reweights these terms (the comments say how it plausibly would), and the
# values keep every site's prevalence within the Brock truth's range.
SITE_MULTIPLIERS: dict[str, tuple[float, float]] = {
    "hospital_a": (0.7, 0.8),  # referral centre: milder emphysema, prior cancers mostly early and cured
    "hospital_b": (0.7, 1.3),  # community hospital: milder emphysema, prior cancers followed up less closely
    "hospital_c": (1.8, 0.8),  # screening programme of heavy smokers: emphysema marks heavier damage
    "hospital_d": (0.8, 1.6),  # oncology centre: prior cancers that spread to the lung
}
SHIFTED_ENRICHMENT = 0.9


def size_term(diameter_mm: float, nodule_type: str) -> float:
    """The shifted truth's size x type term (log-odds): a logistic curve in log-diameter per nodule type."""
    height, slope, midpoint = SIZE_CURVES[nodule_type]
    return height / (1.0 + math.exp(-slope * math.log(diameter_mm / midpoint)))


def pack_years_term(pack_years: float) -> float:
    """Smoking as a dose: a log curve in pack-years (0 for never smokers)."""
    return PACK_YEARS * math.log1p(pack_years / 10.0)


def site_multipliers(site: str) -> tuple[float, float]:
    """(emphysema, prior cancer) multipliers of a site, by its archetype: ``hospital_e`` repeats ``hospital_a``
    as ``sites.default_sites`` does. A site name of another form gets (1, 1): the pooled coefficients."""
    if site in SITE_MULTIPLIERS:
        return SITE_MULTIPLIERS[site]
    m = re.fullmatch(r"hospital_(?:([a-z])|(\d{3}))", site)
    if not m:
        return 1.0, 1.0
    index = ord(m.group(1)) - ord("a") if m.group(1) else int(m.group(2))
    return SITE_MULTIPLIERS[f"hospital_{'abcd'[index % 4]}"]


def shifted_logit(t: PatientTruth) -> float:
    """The shifted truth's full log-odds (module docstring), from the case's variables and site."""
    emph_mult, cancer_mult = site_multipliers(t.site)
    prior = PRIOR_CT_STABLE_2Y * float(t.prior_ct == "stable_2y") + PRIOR_CT_GROWING * float(t.prior_ct == "growing")
    return (
        SHIFTED_INTERCEPT
        + BROCK_AGE * (t.age - 62.0)
        + BROCK_FEMALE * float(t.female)
        + BROCK_FAMILY_HISTORY * float(t.family_history)
        + BROCK_UPPER_LOBE * float(t.upper_lobe)
        + BROCK_COUNT * (t.nodule_count - 4)
        + BROCK_SPICULATION * float(t.spiculated)
        + size_term(t.diameter_mm, t.nodule_type)
        + EMPHYSEMA * emph_mult * float(t.emphysema)
        + PRIOR_CANCER * cancer_mult * float(t.prior_cancer)
        + pack_years_term(t.pack_years)
        + prior
        + BUBBLY_LUCENCY * float(t.bubbly_lucency)
        + ASBESTOS * float(t.asbestos_exposure)
        + SHIFTED_ENRICHMENT
    )
