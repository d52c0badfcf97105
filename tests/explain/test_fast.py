"""The fixed-width explainer gives the explanation of the plain one (padding is masked, then cut away)."""

from __future__ import annotations

import numpy as np
import torch

from workbench.explain.attributions import explain
from workbench.explain.fast import FastExplainer
from workbench.models import build_model


def test_padded_uncompiled_fast_explainer_matches_explain() -> None:
    from tests.helpers.cases import random_cases, tiny_config

    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    batch = random_cases(4).batch(torch.tensor([0]))
    batch = {k: (v[:, :15] if k.startswith("note_") else v) for k, v in batch.items()}  # a note shorter than the width
    plain = explain(model, batch, "c0", steps=8)
    assert model.config.text.max_length > batch["note_ids"].shape[1]  # the fixed width pads this note
    fast = FastExplainer(model, "cpu", compile=False).explain(batch, "c0", steps=8)
    assert fast.words == plain.words and abs(fast.logit - plain.logit) < 1e-5
    np.testing.assert_allclose(fast.word_attribution, plain.word_attribution, atol=1e-5)
    np.testing.assert_allclose(fast.ct_attribution, plain.ct_attribution, atol=1e-6)
    assert all(abs(fast.gate[m] - plain.gate[m]) < 1e-6 for m in plain.gate)
