"""The explain benchmark's per-case record on a small random model: every check runs and lands in range."""

from __future__ import annotations

import numpy as np
import torch

from workbench.bench.explain_bench import _aggregate, _case_record
from workbench.explain.checks import DELETION_FRACTIONS, randomized_copy
from workbench.models import build_model


def test_a_malignant_case_gets_localisation_sanity_deletion_and_occlusion() -> None:
    from tests.helpers.cases import random_cases, tiny_config

    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    batch = random_cases(4).batch(torch.tensor([0]))
    truth = {"label": 1, "site": "hospital_a", "diameter_mm": 8.0,
             "note_facts": {"age": "65 year old", "sex": "65 year old man", "cancer_site": "not a note-only fact"}}
    rec = _case_record(model, randomized_copy(model, 1), batch, "c0", truth, "a 65 year old man", np.random.default_rng(0),
                       occlusion=True)
    assert rec["full"] and rec["explain_ms"] > 0 and rec["phrases"] == 2
    assert 0 <= rec["ct_top_share"] <= 1 and 0 <= rec["ct_top_share_random"] <= 1 and -1 <= rec["spearman"] <= 1
    for key in ("deletion_ct", "deletion_note"):
        curves = rec[f"{key}_curve"]
        assert len(curves["attributed"]) == len(DELETION_FRACTIONS)
        assert abs(curves["attributed"][0] - curves["random"][0]) < 1e-6  # nothing removed yet: the same risk
        assert abs(curves["attributed"][-1] - curves["random"][-1]) < 1e-6  # everything removed: the same again
        assert 0 <= rec[key]["attributed"] <= 1 and 0 <= rec[key]["random"] <= 1
    assert -1 <= rec["occlusion_spearman"] <= 1
    agg = _aggregate([rec, {**rec, "case_id": "c1", "ct_top_share": 0.1}])
    assert agg["ct_hit_rate"] == (0.5 if rec["ct_top_share"] >= 0.5 else 0.0) and agg["n_ct_malignant"] == 2
