"""Label-free fusion pretraining: each modality's summary learns to state its corpus' facts; the gate ends even."""

from __future__ import annotations

import torch

from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.model import ModelConfig, build_model
from workbench.models.text_encoder import TextEncoderConfig
from workbench.train.pretrain_fusion import (
    FusionPretrainConfig,
    ModalityCorpus,
    one_modality_inputs,
    pretrain_fusion,
)


def test_summaries_learn_their_facts_and_the_gate_ends_even() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(ct=CTEncoderConfig(freeze=True), text=TextEncoderConfig(freeze=True)))
    n, width = 64, 8
    p, c = torch.randn(n, 64, 64), torch.randn(n, 8, 32)
    ct_fact = (p[:, :, 0].mean(1) > 0).float()  # a finding the CT cells carry
    ids = torch.randint(5, 50, (n, width))
    states = torch.randn(n, width, 64)
    note_fact = states[:, :, 3].mean(1) * 3  # a number the note states carry
    corpora = {
        "ct": ModalityCorpus(one_modality_inputs(n, "ct", ct={"ct_patch_states": p, "ct_context_states": c,
                                                             "ct_position": torch.rand(n, 3)}),
                             {"finding": ct_fact}, {"finding": 2}),
        "notes": ModalityCorpus(one_modality_inputs(n, "notes", notes={
            "note_ids": ids, "note_mask": torch.ones(n, width, dtype=torch.long), "note_values": torch.zeros(n, width),
            "note_states": states}), {"age": note_fact}, {"age": 1}),
    }
    before = pretrain_fusion(model, corpora, FusionPretrainConfig(steps=1, batch_size=32, progress=False))
    after = pretrain_fusion(model, corpora, FusionPretrainConfig(steps=150, batch_size=32, lr=3e-3, progress=False))
    assert after["ct:finding"] < 0.5 * before["ct:finding"]
    assert after["notes:age"] < 0.5 * before["notes:age"]
    both = {**corpora["ct"].inputs, "note_ids": ids[:4], "note_mask": torch.ones(4, width, dtype=torch.long),
            "note_values": torch.zeros(4, width), "note_states": states[:4], "modality_mask": torch.ones(4, 2, dtype=torch.bool)}
    both = {k: (v[:4] if v is not None else None) for k, v in both.items()}
    with torch.no_grad():
        gate = model(**both).gate
    assert torch.allclose(gate, torch.full_like(gate, 0.5))  # zeroed last layer: an even gate
