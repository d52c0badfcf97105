"""The best accuracy each modality allows, computed from the truth (benchmarks only).

``bayes`` scores the test split with the true risk itself. The modality ceilings fit a logistic model on the
train split to exactly the true variables that modality carries (docs/architecture.md §5 table) and score the test split:
what a model that read that modality perfectly could reach. Targets in later issues are stated against these.

The variables enter in the form the cohort's truth uses them, so a ceiling is "read perfectly and knew the risk
function's shape": Brock's inverse-square-root diameter for a brock cohort; for a shifted one
(``risk_shifted.py``) its per-type size curve, pack-years as a dose, the site-scaled emphysema and prior-cancer
terms, and the variables only that truth has (bubbly lucency in the CT, asbestos exposure in the note).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.cohort import risk_shifted
from workbench.cohort.risk import brock_probability
from workbench.cohort.spec import TRUTHS, PatientTruth
from workbench.errors import CohortError
from workbench.metrics import auroc, fit_logistic, predict_logistic


def ct_features(t: PatientTruth) -> list[float]:
    """The CT's true variables, in the form the case's truth uses them (Brock's, or the shifted truth's)."""
    if t.truth == "shifted":
        return _shifted_ct_features(t)
    return [
        (t.diameter_mm / 10.0) ** -0.5,
        float(t.nodule_type == "part_solid"),
        float(t.nodule_type == "non_solid"),
        float(t.upper_lobe),
        float(t.nodule_count),
        float(t.spiculated),
        float(t.emphysema),
    ]


def note_features(t: PatientTruth) -> list[float]:
    """The note's true variables (emphysema only where the note states it), in the form the case's truth uses."""
    if t.truth == "shifted":
        return _shifted_note_features(t)
    return [
        float(t.age),
        float(t.female),
        float(t.family_history),
        float(t.ever_smoker),
        float(t.prior_cancer),
        float(t.prior_ct == "stable_2y"),
        float(t.prior_ct == "growing"),
        float(t.emphysema_in_note),
    ]


def _shifted_ct_features(t: PatientTruth) -> list[float]:
    emphysema_mult, _ = risk_shifted.site_multipliers(t.site)
    return [
        risk_shifted.size_term(t.diameter_mm, t.nodule_type),
        float(t.nodule_type == "part_solid"),
        float(t.nodule_type == "non_solid"),
        float(t.upper_lobe),
        float(t.nodule_count),
        float(t.spiculated),
        emphysema_mult * float(t.emphysema),
        float(t.bubbly_lucency),
    ]


def _shifted_note_features(t: PatientTruth) -> list[float]:
    emphysema_mult, cancer_mult = risk_shifted.site_multipliers(t.site)
    return [
        float(t.age),
        float(t.female),
        float(t.family_history),
        risk_shifted.pack_years_term(t.pack_years),
        cancer_mult * float(t.prior_cancer),
        float(t.prior_ct == "stable_2y"),
        float(t.prior_ct == "growing"),
        emphysema_mult * float(t.emphysema_in_note),
        float(t.asbestos_exposure),
    ]


def truth_of(truths: Sequence[PatientTruth]) -> str:
    """The one risk function the records follow (their ``truth`` field; records written before it are brock)."""
    names = sorted({t.truth for t in truths})
    if len(names) != 1 or names[0] not in TRUTHS:
        raise CohortError(f"truth records follow {', '.join(names) or 'no'} risk function(s): need exactly one of "
                          f"{', '.join(TRUTHS)}")
    return names[0]


def ceilings(truths: Sequence[PatientTruth], truth: str | None = None) -> dict[str, float]:
    """``bayes``, ``ct_only_ceiling``, ``notes_only_ceiling``, ``brock_oracle`` on the test split.

    ``truth`` (brock | shifted) is checked against the records when given; by default the records decide."""
    found = truth_of(truths)
    if truth is not None and truth != found:
        raise CohortError(f"ceilings for the {truth} truth asked of records that follow the {found} truth")
    train = [t for t in truths if t.split == "train"]
    test = [t for t in truths if t.split == "test"]
    if not train or not test:
        raise ValueError("ceilings need cases in both the train and the test split")
    y_train = np.array([t.label for t in train])
    y_test = np.array([t.label for t in test])
    out = {"bayes": auroc(y_test, np.array([t.risk for t in test]))}
    for key, feats in (("ct_only_ceiling", ct_features), ("notes_only_ceiling", note_features)):
        w = fit_logistic(np.array([feats(t) for t in train]), y_train)
        out[key] = auroc(y_test, predict_logistic(w, np.array([feats(t) for t in test])))
    out["brock_oracle"] = auroc(y_test, np.array([brock_probability(t) for t in test]))
    return out
