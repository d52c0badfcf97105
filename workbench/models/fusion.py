"""The modality-gated fusion transformer: how CT and note tokens meet, and how much each one counts.

Tokens of each modality, led by a learned summary token ([CT], [NOTE]) and tagged with a modality embedding, go
through pre-norm transformer layers whose attention scores carry a learned bias M[head, query modality, key
modality]. Cross-modality pairs start penalised (``cross_bias_init``), so each modality first builds its own summary
and the model learns how much to look across. A routing gate g = softmax(MLP(summary_m)) over the present modalities
weighs the summaries into the fused representation; the head reads that. The weighted sum is scaled by the number of
present modalities (``gate_sum``): with an even gate the head reads s_ct + s_note, so the log-odds of the two
modalities add (as risk factors do in the truth and in Brock) rather than average. On the full cohort, all else
equal, one seed each on the earlier protocol's test split: the convex mix 0.841 AUROC, the scaled sum 0.854; that
guided the choice then and is not evidence (the figures of record are the JSONs in bench/results/ made under the
protocol). The gate still sums to one and is exactly 0 on an absent modality.

A missing modality is masked out of attention (as keys) and out of the gate, from the per-sample
``modality_mask`` and the note's real padding mask: the model still answers and the gate says which
modality it used. ``mode="late"`` is the ablation: no cross-modal attention, no bias, no gate; the modality
summaries are concatenated (an absent one is zeros) and the head reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MODALITIES: tuple[str, ...] = ("ct", "notes")  # column order of every modality_mask


@dataclass
class FusionConfig:
    d_model: int = 64  # token width shared by both encoders' outputs
    n_heads: int = 4
    n_layers: int = 2
    ffn_size: int = 128
    dropout: float = 0.1
    cross_bias_init: float = -2.0  # initial M for cross-modality pairs (0 within a modality)
    gate_hidden: int = 32
    mode: str = "gated"  # "gated" (the model) or "late" (ablation: concatenated summaries, no gate, no bias)
    moe: bool = False  # top-2 mixture-of-experts FFN with a load-balancing loss
    n_experts: int = 4
    moe_loss_weight: float = 0.01
    gate_sum: bool = True  # fused = (number present) x sum_m g_m s_m: an even gate adds the modalities' evidence


@dataclass
class FusionOutput:
    logits: torch.Tensor  # (B,) malignancy log-odds (before temperature scaling)
    gate: torch.Tensor  # (B, M) weight of each modality, 0 where absent, rows sum to 1
    modality_logits: torch.Tensor  # (B, M) each summary read alone by its own head (auxiliary)
    fused: torch.Tensor  # (B, D) or (B, M*D) for "late": the representation the head reads
    attentions: list[torch.Tensor] | None  # per layer (B, H, L, L) when asked for
    token_modality: torch.Tensor  # (L,) modality index of each fused token
    aux_loss: torch.Tensor  # scalar: MoE load-balancing loss (0 without MoE)
    columns: list[int]  # modality_mask column of each gate / modality_logits column


class ModalityBias(nn.Module):
    """M[head, q_mod, k_mod] spread over token pairs: (B, L, M) one-hot token modalities -> (B, H, L, L).

    Every sample shares the token layout, so the bias is computed once and expanded over the batch (a view, no
    copy). Its own leaf module so that Opacus gives M a per-sample gradient (``workbench.train.private``
    registers the grad sampler); a parameter used outside a module's forward gets none.
    """

    def __init__(self, n_heads: int, n_modalities: int, cross_init: float) -> None:
        super().__init__()
        m = torch.full((n_heads, n_modalities, n_modalities), cross_init)
        m[:, range(n_modalities), range(n_modalities)] = 0.0
        self.M = nn.Parameter(m)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        first = onehot[0]  # (L, M): the same for every sample
        bias = torch.einsum("ia,hac,jc->hij", first, self.M, first)  # (H, L, L)
        return bias.unsqueeze(0).expand(onehot.shape[0], -1, -1, -1)  # (B, H, L, L)


MASKED = -1e9  # additive score for a key a query may not read (finite: a row with no readable key stays finite)


class ModalityAttention(nn.Module):
    def __init__(self, c: FusionConfig, n_modalities: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim = c.n_heads, c.d_model // c.n_heads
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.out = nn.Linear(c.d_model, c.d_model)
        self.bias = ModalityBias(c.n_heads, n_modalities, c.cross_bias_init) if c.mode == "gated" else None

    def forward(self, x: torch.Tensor, onehot: torch.Tensor, mask: torch.Tensor,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, L, D); onehot (B, L, M) token modality; mask (B, 1, L|1, L) additive: 0 or MASKED."""
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, L, hd)
        bias = mask if self.bias is None else self.bias(onehot) + mask  # (B, H, L, L)
        if need_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias  # (B, H, L, L)
            attn = scores.softmax(-1)
            y = attn @ v  # (B, H, L, hd)
        else:  # the fused kernel: no (B, H, L, L) probabilities kept for backward
            attn = None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.out(y.transpose(1, 2).reshape(b, length, d)), attn


class FeedForward(nn.Module):
    def __init__(self, c: FusionConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(c.d_model, c.ffn_size), nn.GELU(), nn.Dropout(c.dropout),
                                 nn.Linear(c.ffn_size, c.d_model))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), x.new_zeros(())


class MoEFeedForward(nn.Module):
    """Top-2 mixture of experts with the Switch-Transformer load-balancing loss.

    The experts are small, so every expert runs on every token and the router's top-2 weights (the rest 0)
    combine them: the same result as sparse dispatch, and every parameter stays inside a module's forward.
    """

    def __init__(self, c: FusionConfig) -> None:
        super().__init__()
        self.router = nn.Linear(c.d_model, c.n_experts)
        self.experts = nn.ModuleList(FeedForward(c) for _ in range(c.n_experts))
        self.n_experts = c.n_experts

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self.router(x).softmax(-1)  # (B, L, E)
        top, idx = probs.topk(2, dim=-1)  # (B, L, 2)
        weights = torch.zeros_like(probs).scatter(-1, idx, top / top.sum(-1, keepdim=True))  # (B, L, E)
        out = sum(weights[..., e:e + 1] * self.experts[e](x, valid)[0] for e in range(self.n_experts))
        w = valid.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
        n = w.sum().clamp_min(1.0)
        share = (F.one_hot(idx[..., 0], self.n_experts).to(x.dtype) * w).sum((0, 1)) / n  # (E,) top-1 share
        mean_prob = (probs * w).sum((0, 1)) / n  # (E,)
        return out, self.n_experts * (share * mean_prob).sum()  # type: ignore[return-value]


class FusionLayer(nn.Module):
    def __init__(self, c: FusionConfig, n_modalities: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = ModalityAttention(c, n_modalities)
        self.ffn: nn.Module = MoEFeedForward(c) if c.moe else FeedForward(c)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, onehot: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        a, attn = self.attn(self.norm1(x), onehot, mask, need_weights)
        x = x + self.drop(a)
        f, aux = self.ffn(self.norm2(x), valid)
        return x + self.drop(f), attn, aux


class FusionTransformer(nn.Module):
    """Modality tokens in, one log-odds out, with the gate and attention that explain it.

    Example:
        >>> fusion = FusionTransformer(FusionConfig(), ("ct", "notes"))
        >>> out = fusion({"ct": torch.zeros(2, 5, 64), "notes": torch.zeros(2, 7, 64)},
        ...              {"ct": torch.ones(2, 5, dtype=torch.bool), "notes": torch.ones(2, 7, dtype=torch.bool)})
        >>> out.logits.shape, out.gate.shape
        (torch.Size([2]), torch.Size([2, 2]))
    """

    def __init__(self, config: FusionConfig, modalities: tuple[str, ...]) -> None:
        super().__init__()
        if config.mode not in ("gated", "late"):
            raise ValueError(f"fusion mode {config.mode!r}: expected 'gated' or 'late'")
        self.config, self.modalities = config, modalities
        self.columns = [MODALITIES.index(m) for m in modalities]
        m, d = len(modalities), config.d_model
        self.summary_token = nn.Embedding(m, d)  # the [CT] / [NOTE] tokens
        self.modality_embedding = nn.Embedding(m, d)
        self.layers = nn.ModuleList(FusionLayer(config, m) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(d)
        self.gate_mlp = nn.Sequential(nn.Linear(d, config.gate_hidden), nn.GELU(), nn.Linear(config.gate_hidden, 1))
        self.modality_head = nn.Linear(d, 1)
        self.head = nn.Linear(d * m if config.mode == "late" else d, 1)

    def forward(self, tokens: dict[str, torch.Tensor], valid: dict[str, torch.Tensor],
                return_attention: bool = False) -> FusionOutput:
        """tokens[m] (B, T_m, D); valid[m] (B, T_m) bool: real, present tokens (padding and absent modality False)."""
        first = tokens[self.modalities[0]]
        b = first.shape[0]
        parts, masks, mods = [], [], []
        for i, name in enumerate(self.modalities):
            x, ok = tokens[name], valid[name]
            present = ok.any(dim=1)  # (B,) a modality with no valid token is absent
            idx = torch.full((b, 1), i, device=x.device, dtype=torch.long)
            parts += [self.summary_token(idx), x]  # (B, 1, D), (B, T_m, D)
            masks += [present[:, None], ok]
            mods.append(torch.full((x.shape[1] + 1,), i, device=x.device, dtype=torch.long))
        token_modality = torch.cat(mods)  # (L,)
        key_ok = torch.cat(masks, dim=1)  # (B, L)
        x = torch.cat(parts, dim=1)  # (B, L, D)
        x = x + self.modality_embedding(token_modality.expand(b, -1))
        onehot = F.one_hot(token_modality, len(self.modalities)).to(x.dtype).expand(b, -1, -1)  # (B, L, M)
        mask = torch.zeros(key_ok.shape, dtype=x.dtype, device=x.device).masked_fill(~key_ok, MASKED)[:, None, None]
        if self.config.mode == "late":  # no query reads another modality's keys
            same = token_modality[:, None] == token_modality[None, :]  # (L, L)
            mask = mask + torch.zeros(same.shape, dtype=x.dtype, device=x.device).masked_fill(~same, MASKED)
        attentions: list[torch.Tensor] = []
        aux = x.new_zeros(())
        for layer in self.layers:
            x, attn, a = layer(x, onehot, mask, key_ok, return_attention)  # mask (B, 1, 1|L, L)
            aux = aux + a
            if attn is not None:
                attentions.append(attn)
        x = self.norm(x)
        starts = [0]
        for name in self.modalities[:-1]:
            starts.append(starts[-1] + tokens[name].shape[1] + 1)
        summaries = x[:, starts]  # (B, M, D)
        present = key_ok[:, starts]  # (B, M)
        modality_logits = self.modality_head(summaries).squeeze(-1)  # (B, M)
        if self.config.mode == "late":
            gate = present.to(x.dtype) / present.sum(1, keepdim=True).clamp_min(1)
            fused = (summaries * present[..., None].to(x.dtype)).flatten(1)  # (B, M*D)
        else:
            scores = self.gate_mlp(summaries).squeeze(-1)  # (B, M)
            scores = scores.masked_fill(~present, torch.finfo(scores.dtype).min)
            gate = scores.softmax(-1) * present.to(x.dtype)
            gate = gate / gate.sum(1, keepdim=True).clamp_min(1e-12)  # exactly 0 on an absent modality
            fused = (gate[..., None] * summaries).sum(1)  # (B, D)
            if self.config.gate_sum:  # a convex mix averages the modalities' log-odds; risk factors add them
                fused = fused * present.sum(1, keepdim=True).to(x.dtype)
        logits = self.head(fused).squeeze(-1)  # (B,)
        return FusionOutput(logits, gate, modality_logits, fused, attentions if return_attention else None,
                            token_modality, aux * self.config.moe_loss_weight, self.columns)
