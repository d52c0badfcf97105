"""Batched inference of a model over encoded cases: what evaluation, calibration and explanation all call."""

from __future__ import annotations

import numpy as np
import torch

from workbench.models.model import NoduleRiskModel
from workbench.runtime.encode import EncodedCases


def to_device(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_logits(model: NoduleRiskModel, data: EncodedCases, batch_size: int = 64,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """Logits, gate weights and per-modality logits of every row of ``data`` (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    logits, gates, mods, fused = [], [], [], []
    for batch in data.batches(batch_size):
        out = model.forward_batch(to_device(batch, device))
        logits.append(out.logits.float().cpu())
        gates.append(out.gate.float().cpu())
        mods.append(out.modality_logits.float().cpu())
        fused.append(out.fused.float().cpu())
    model.train(was_training)
    if not logits:
        return {"logits": np.zeros(0), "gate": np.zeros((0, len(model.modalities))), "modality_logits": np.zeros((0, 0)),
                "fused": np.zeros((0, 0))}
    return {"logits": torch.cat(logits).numpy(), "gate": torch.cat(gates).numpy(),
            "modality_logits": torch.cat(mods).numpy(), "fused": torch.cat(fused).numpy()}
