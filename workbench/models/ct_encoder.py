"""CT encoder: MONAI 3D convolutions over the nodule patch and a coarse chest view, turned into tokens.

Three inputs, three kinds of token:
- the nodule patch (1, 32, 32, 32) at 1.25 mm: a strided MONAI ``Convolution`` stack down to a 4^3 feature map,
  each cell one token (64 tokens) with a learned position embedding; size, solidity and margin live here;
- the chest context (2, 32, 32, 32) at about 1 cm (windowed HU, LAA-950 share): a lighter stack down to 2^3
  cells (8 tokens); emphysema lives here, outside the patch;
- the nodule's position in the lung box (3,): one token; lobe is a matter of position;
- the finding (``finding_token``): an MLP over the mean and maximum of the patch cells, the mean context cell
  and the position, one token. Size is a property of the whole nodule, not of a 10 mm cell: a linear read of
  mean-pooled cells gave a pretrained reader only R^2 0.53 on log diameter. The CT reader's heads read this
  vector linearly, so the fusion (and, under DP, a linear head alone) can read the findings from one token.

GroupNorm, not BatchNorm, and no in-place activation, so that Opacus computes per-sample gradients (docs/architecture.md §6).

``CTEncoderConfig(path=DIR, freeze=True)`` starts from a CT reader pretrained without malignancy labels
(``workbench pretrain-ct``, ``workbench.train.pretrain_ct``) and keeps its convolution stacks fixed; the
projections to the fusion width still train, as the note reader's projection does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from monai.networks.blocks import Convolution
from torch import nn


@dataclass
class CTEncoderConfig:
    patch_size: int = 32  # voxels per side of the nodule patch (PreprocessConfig.patch_size)
    context_size: int = 32  # voxels per side of the chest context
    patch_channels: tuple[int, ...] = (16, 32, 64)  # one stride-2 stage each: 32 -> 16 -> 8 -> 4
    context_channels: tuple[int, ...] = (8, 16, 32)  # 32 -> 16 -> 8 -> 4, then pooled to 2^3
    context_grid: int = 2  # context tokens per side
    groups: int = 8  # GroupNorm groups (must divide every channel count)
    dropout: float = 0.0  # 3-D feature dropout; 0 by default: its masks cost as much as a convolution on CPU
    path: str | None = None  # a pretrained CT reader directory, read at build only (not saved); None: random start
    freeze: bool = False  # keep the convolution stacks and the finding MLP fixed (a pretrained reader under DP)
    finding_token: bool = True  # one more token: the finding MLP's output (False: models saved before it)
    finding_size: int = 64


CT_READER_WEIGHTS = "ct_reader.safetensors"


def _block(cin: int, cout: int, stride: int, groups: int, dropout: float) -> Convolution:
    return Convolution(3, cin, cout, strides=stride, kernel_size=3, act=("relu", {"inplace": False}),
                       norm=("group", {"num_groups": min(groups, cout)}), dropout=dropout or None)


class CTEncoder(nn.Module):
    """(patch, context, position) -> CT tokens (B, T, d_model); T = (P/8)^3 + context_grid^3 + 1 (+ 1 finding).

    Example:
        >>> enc = CTEncoder(CTEncoderConfig(), d_model=64)
        >>> enc(torch.zeros(2, 1, 32, 32, 32), torch.zeros(2, 2, 32, 32, 32), torch.zeros(2, 3)).shape
        torch.Size([2, 74, 64])
    """

    def __init__(self, config: CTEncoderConfig, d_model: int) -> None:
        super().__init__()
        self.config = config
        c = config
        stages: list[nn.Module] = []
        cin = 1
        for cout in c.patch_channels:
            stages.append(_block(cin, cout, 2, c.groups, c.dropout))
            cin = cout
        self.patch_net = nn.Sequential(*stages)
        ctx: list[nn.Module] = []
        cin = 2
        for cout in c.context_channels:
            ctx.append(_block(cin, cout, 2, c.groups, c.dropout))
            cin = cout
        ctx.append(nn.AdaptiveAvgPool3d(c.context_grid))
        self.context_net = nn.Sequential(*ctx)
        grid = c.patch_size // 2 ** len(c.patch_channels)
        self.n_patch_tokens = grid**3
        self.n_context_tokens = c.context_grid**3
        self.n_tokens = self.n_patch_tokens + self.n_context_tokens + 1 + int(c.finding_token)
        self.finding: nn.Module | None = None
        if c.finding_token:
            cin = 2 * c.patch_channels[-1] + c.context_channels[-1] + 3
            self.finding = nn.Sequential(nn.Linear(cin, 2 * c.finding_size), nn.GELU(),
                                         nn.Linear(2 * c.finding_size, c.finding_size))
            self.finding_proj = nn.Linear(c.finding_size, d_model)
        self.patch_proj = nn.Linear(c.patch_channels[-1], d_model)
        self.context_proj = nn.Linear(c.context_channels[-1], d_model)
        self.position_proj = nn.Linear(3, d_model)
        self.token_pos = nn.Embedding(self.n_tokens, d_model)  # where each token comes from
        if c.path:
            self.load_reader(c.path)
        if c.freeze:
            for p in self.frozen_parameters():
                p.requires_grad_(False)

    def frozen_parameters(self) -> list[nn.Parameter]:
        """What ``freeze`` keeps fixed: the reader proper (convolutions and finding MLP), not the projections."""
        return [*self.patch_net.parameters(), *self.context_net.parameters(),
                *(self.finding.parameters() if self.finding is not None else [])]

    def finding_vector(self, patch_states: torch.Tensor, context_states: torch.Tensor,
                       ct_position: torch.Tensor) -> torch.Tensor:
        """(B, finding_size): what the reader says about the nodule (its heads read this linearly)."""
        assert self.finding is not None
        x = torch.cat([patch_states.mean(1), patch_states.amax(1), context_states.mean(1), ct_position - 0.5], dim=1)
        return self.finding(x)

    def load_reader(self, path: str | Path) -> None:
        """Load a pretrained CT reader's convolution stacks (and its projections when the width matches)."""
        from safetensors.torch import load_file

        from workbench.errors import WorkbenchError

        f = Path(path) / CT_READER_WEIGHTS
        if not f.is_file():
            raise WorkbenchError(f"{path}: not a CT reader directory ({CT_READER_WEIGHTS} is missing)")
        state = load_file(str(f))
        own = self.state_dict()
        convs = {k: v for k, v in state.items() if k.startswith(("patch_net.", "context_net.", "finding."))}
        bad = [k for k, v in convs.items() if k not in own or own[k].shape != v.shape]
        if bad or not convs:
            raise WorkbenchError(f"{f}: does not fit this CT encoder's config ({bad[:3] or 'no convolution weights'})")
        rest = {k: v for k, v in state.items() if k not in convs and k in own and own[k].shape == v.shape}
        self.load_state_dict({**own, **convs, **rest})

    def features(self, ct_patch: torch.Tensor, ct_context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution stacks' cells: (B, g^3, C_patch) and (B, grid^3, C_context); a frozen reader's are
        computed once per case (``workbench.train.dataset.with_ct_states``)."""
        p = self.patch_net(ct_patch)  # (B, C, g, g, g)
        x = self.context_net(ct_context)  # (B, Cc, 2, 2, 2)
        return p.flatten(2).transpose(1, 2), x.flatten(2).transpose(1, 2)

    def forward(self, ct_patch: torch.Tensor | None, ct_context: torch.Tensor | None, ct_position: torch.Tensor,
                patch_states: torch.Tensor | None = None, context_states: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens from the images, or from their precomputed ``features`` (``patch_states``, ``context_states``)."""
        if patch_states is None or context_states is None:
            assert ct_patch is not None and ct_context is not None
            patch_states, context_states = self.features(ct_patch, ct_context)
        b = patch_states.shape[0]
        p = self.patch_proj(patch_states)  # (B, g^3, D)
        x = self.context_proj(context_states)  # (B, 8, D)
        pos = self.position_proj(ct_position - 0.5)[:, None]  # (B, 1, D)
        parts = [p, x, pos]
        if self.finding is not None:
            parts.append(self.finding_proj(self.finding_vector(patch_states, context_states, ct_position))[:, None])
        tokens = torch.cat(parts, dim=1)  # (B, T, D)
        idx = torch.arange(self.n_tokens, device=tokens.device).expand(b, -1)  # (B, T): per-sample, for Opacus
        return tokens + self.token_pos(idx)
