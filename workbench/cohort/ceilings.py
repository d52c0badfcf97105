"""The best accuracy each modality allows, computed from the truth (benchmarks only).

``bayes`` scores the test split with the true risk itself. The modality ceilings fit a logistic model on the
train split to exactly the true variables that modality carries (docs/architecture.md §5 table) and score the test split:
what a model that read that modality perfectly could reach. Targets in later issues are stated against these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.cohort.risk import brock_probability
from workbench.cohort.spec import PatientTruth
from workbench.metrics import auroc, fit_logistic, predict_logistic


def ct_features(t: PatientTruth) -> list[float]:
    """The CT's true variables, in the form the Brock model uses them."""
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
    """The note's true variables (emphysema only where the note states it)."""
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


def ceilings(truths: Sequence[PatientTruth]) -> dict[str, float]:
    """``bayes``, ``ct_only_ceiling``, ``notes_only_ceiling``, ``brock_oracle`` on the test split."""
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
