"""The training loss, shared by the plain and the private trainer (torch and the model's output type only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.models.fusion import FusionOutput


def evidence_gate_target(modality_logits: torch.Tensor, present: torch.Tensor, tau: float) -> torch.Tensor:
    """softmax over present modalities of |z-score of the own-head logit within the batch| / tau.

    Evidence is how unusual a modality makes this case, in that modality's own spread: a small plain nodule is
    the typical CT (little evidence, though its risk is low), a note reporting growth on a prior CT is not.
    Standardising per modality keeps the stronger head from winning every case. Detached: the target teaches
    the gate, never the heads.
    """
    z = modality_logits.detach()  # (B, M)
    w = present.to(z.dtype)
    n = w.sum(0).clamp_min(1)
    mean = (z * w).sum(0) / n  # (M,)
    std = (((z - mean) ** 2 * w).sum(0) / n).sqrt().clamp_min(1e-3)  # (M,)
    strength = (z - mean).abs() / std / tau
    return strength.masked_fill(~present, -1e9).softmax(-1) * present


def loss_fn(out: FusionOutput, batch: dict[str, torch.Tensor], pos_weight: float, aux_weight: float,
            reduction: str = "mean", gate_weight: float = 0.0, gate_tau: float = 1.0) -> torch.Tensor:
    """Class-weighted BCE on the fused logit, plus each present modality's own head, plus the MoE loss, plus
    (``gate_weight`` > 0) a cross-entropy pulling the gate towards ``evidence_gate_target`` on cases with both."""
    y = batch["label"].float()
    w = torch.where(y > 0.5, torch.as_tensor(pos_weight, dtype=y.dtype, device=y.device), torch.ones_like(y))
    loss = F.binary_cross_entropy_with_logits(out.logits.float(), y, weight=w, reduction="none")  # (B,)
    if aux_weight > 0:
        mod_mask = batch["modality_mask"][:, out.columns].float()  # (B, M)
        aux = F.binary_cross_entropy_with_logits(out.modality_logits.float(), y[:, None].expand_as(mod_mask),
                                                 reduction="none") * mod_mask * w[:, None]
        loss = loss + aux_weight * aux.sum(1) / mod_mask.sum(1).clamp_min(1)
    if gate_weight > 0 and out.gate.shape[1] > 1:
        present = batch["modality_mask"][:, out.columns]
        target = evidence_gate_target(out.modality_logits, present, gate_tau)  # (B, M)
        both = present.all(1).to(loss.dtype)
        ce = -(target * out.gate.clamp_min(1e-6).log()).sum(1)  # (B,)
        loss = loss + gate_weight * ce * both
    if reduction == "none":
        return loss
    return loss.mean() + out.aux_loss
