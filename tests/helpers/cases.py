"""Tiny synthetic model inputs: a small model configuration and random encoded cases, fast on a CPU."""

from __future__ import annotations

import torch

from workbench.models import CTEncoderConfig, FusionConfig, ModelConfig, TextEncoderConfig
from workbench.runtime.encode import EncodedCases


def tiny_config(moe: bool = False) -> ModelConfig:
    """A fused model small enough to train in a test: 16^3 patches, one text layer, two fusion layers."""
    return ModelConfig(
        ct=CTEncoderConfig(patch_size=16, context_size=16, patch_channels=(8, 16), context_channels=(8, 8), groups=4),
        text=TextEncoderConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=32, max_length=24,
                               dropout=0.0),
        fusion=FusionConfig(d_model=32, n_heads=2, n_layers=2, ffn_size=32, dropout=0.0, gate_hidden=8, moe=moe),
    )


def random_cases(n: int, seed: int = 0) -> EncodedCases:
    """``n`` (at least 4) random cases shaped for ``tiny_config``: case 1 padded, case 2 without its note, case 3
    without its CT; labels 1, 0, 1, 0, 0, 1 (n <= 6)."""
    g = torch.Generator().manual_seed(seed)
    length = 24
    mask = torch.ones(n, length, dtype=torch.long)
    mask[1, 10:] = 0  # real padding
    modality = torch.ones(n, 2, dtype=torch.bool)
    modality[2, 1] = False  # a case without its note
    modality[3, 0] = False  # a case without its CT
    ids = torch.randint(10, 1900, (n, length), generator=g) * mask
    values = torch.where(ids % 7 == 0, torch.rand(n, length, generator=g), torch.zeros(n, length)) * mask
    t = {
        "ct_patch": torch.rand(n, 1, 16, 16, 16, generator=g),
        "ct_context": torch.rand(n, 2, 16, 16, 16, generator=g),
        "ct_position": torch.rand(n, 3, generator=g),
        "note_ids": ids, "note_mask": mask, "note_values": values, "modality_mask": modality,
        "label": torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0][:n]),
    }
    return EncodedCases([f"c{i}" for i in range(n)], ["s"] * n, t)
