"""What DP-SGD trains: named subsets of the model's parameters (``dp-train`` in ``[tool.flwr.app.config]``).

Under DP a node can afford few parameters (the noise grows with their number); the readers, pretrained without
labels, stay frozen whatever the subset. Used by the federated nodes, the private trainer, the fusion
pretraining (which leaves the gate and heads to the nodes) and the DP speed benchmark.
"""

from __future__ import annotations

from workbench.models.model import NoduleRiskModel

FUSION_PREFIXES = ("fusion.",)  # the fusion transformer, its gate and heads
HEAD_PREFIXES = ("fusion.head.", "fusion.modality_head.", "fusion.gate_mlp.")  # the gate and the heads alone
FUSED_HEAD_PREFIXES = ("fusion.head.",)  # the fused head alone: D + 1 weights over a fixed representation


def freeze_for_dp(model: NoduleRiskModel, train: str) -> None:
    """``all``: every parameter that is trainable stays so (pretrained readers are frozen already);
    ``fusion``: only the fusion transformer, its gate and heads; ``heads``: only the gate and the heads (the
    encoders and the fusion layers stay as the starting model has them); ``head``: only the fused head (a
    logistic model over the representation of a label-free pretrained fusion, ``workbench pretrain-fusion``)."""
    keep = {"fusion": FUSION_PREFIXES, "heads": HEAD_PREFIXES, "head": FUSED_HEAD_PREFIXES}.get(train)
    if keep is not None:
        for name, p in model.named_parameters():
            if not name.startswith(keep):
                p.requires_grad_(False)


__all__ = ["FUSED_HEAD_PREFIXES", "FUSION_PREFIXES", "HEAD_PREFIXES", "freeze_for_dp"]
