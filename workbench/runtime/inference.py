"""Batched inference of a model over encoded cases: what evaluation, calibration and explanation all call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from workbench.models.model import NoduleRiskModel
from workbench.runtime.encode import EncodedCases


def to_device(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_logits(model: NoduleRiskModel, data: EncodedCases, batch_size: int = 64,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """Logits, gate weights, per-modality logits, the fused embedding and the CT reader's nodule vector
    (``nodule``: ``capture_nodule``; zero rows without a CT) of every row of ``data`` (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    logits, gates, mods, fused, nodule = [], [], [], [], []
    for batch in data.batches(batch_size):
        with capture_nodule(model) as found:
            out = model.forward_batch(to_device(batch, device))
        logits.append(out.logits.float().cpu())
        gates.append(out.gate.float().cpu())
        mods.append(out.modality_logits.float().cpu())
        fused.append(out.fused.float().cpu())
        nodule.append(nodule_rows(found, batch["modality_mask"], len(out.logits)))
    model.train(was_training)
    if not logits:
        return {"logits": np.zeros(0), "gate": np.zeros((0, len(model.modalities))), "modality_logits": np.zeros((0, 0)),
                "fused": np.zeros((0, 0)), "nodule": np.zeros((0, 0))}
    return {"logits": torch.cat(logits).numpy(), "gate": torch.cat(gates).numpy(),
            "modality_logits": torch.cat(mods).numpy(), "fused": torch.cat(fused).numpy(),
            "nodule": torch.cat(nodule).numpy()}


@contextmanager
def capture_nodule(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, the CT reader's finding vector (``CTEncoder.finding_vector``: what the frozen reader was
    pretrained to state diameter, type, spiculation, emphysema and upper lobe from) of each forward pass is
    appended to the yielded list, read off the forward pass itself (no second pass). Nothing is appended for a
    model without a CT reader or without a finding token."""
    found: list[torch.Tensor] = []
    enc = getattr(model, "ct_encoder", None)
    finding = getattr(enc, "finding", None)
    if finding is None:
        yield found
        return
    handle = finding.register_forward_hook(lambda _m, _i, out: found.append(out.detach().float().cpu()))
    try:
        yield found
    finally:
        handle.remove()


def nodule_rows(found: list[torch.Tensor], modality_mask: torch.Tensor, n: int) -> torch.Tensor:
    """The captured finding vectors of one batch, (n, width), zero in rows without a CT (nothing to compare)."""
    if not found:
        return torch.zeros(n, 0)
    v = found[-1].clone()
    v[~modality_mask[:, 0].cpu().bool()] = 0.0
    return v

