"""Label-free pretraining of the fusion layers on the two reader corpora, one modality at a time.

Why (every AUROC here is one seed on the earlier protocol's test split: it guided the design then and is not
evidence; the figures of record are the JSONs in bench/results/ made under the protocol): under DP a node can afford
to train only a few hundred parameters (DP-SGD over 14,722-89,187 parameters stayed at AUROC 0.56-0.60 at epsilon
1-8), but a linear head over fusion layers left at their random start reached only 0.636 even without DP: random
attention and feed-forward layers bury the readers' findings. Here the projections and fusion layers learn, from the
same separate corpora the readers came from (CT phantoms with their annotations, notes with their facts; no cohort
case, no malignancy label), to make each modality's summary token state that modality's findings linearly: a CT-only
case's [CT] summary predicts diameter, type, spiculation, emphysema and upper lobe; a note-only case's [NOTE]
summary predicts age, sex, family history, smoking, prior cancer, prior CT. With ``pairs`` a third batch each step
joins a phantom and a note into a made-up two-modality case whose fused representation must state both sets of facts
through the same heads: without it, cross-modal attention (never trained) shifted each summary when both were
present and a linear head's ceiling on the cohort was 0.850 AUROC (one seed, earlier protocol's test split, as
above); with it, 0.877 (H200, 1,500 steps). The gate's last layer is then zeroed (an even gate: the fused
representation is s_ct + s_note, so log-odds add) and a hospital's private training needs only the heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from workbench.models.model import NoduleRiskModel
from workbench.train.dp_subsets import HEAD_PREFIXES


@dataclass
class FusionPretrainConfig:
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    pairs: bool = False  # also cases with both modalities (a phantom beside a note): the same fact heads read
    # the fused s_ct + s_note, so each summary learns to state its facts with the other modality present

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModalityCorpus:
    """One modality's corpus as model inputs (a frozen reader's states) and its facts."""

    inputs: dict[str, torch.Tensor | None]  # keyword inputs of NoduleRiskModel.forward, first dim N
    facts: dict[str, torch.Tensor]  # fact -> (N,) float (class index, 0/1, or a standardised number)
    classes: dict[str, int]  # fact -> number of classes (1: regression, 2: binary)

    def __len__(self) -> int:
        return len(next(iter(self.facts.values())))

    @cached_property
    def length_order(self) -> torch.Tensor | None:
        """Cases sorted by note length (None without notes), computed once for every draw."""
        mask = self.inputs.get("note_mask")
        if mask is None or mask.shape[1] <= 1:
            return None
        return torch.argsort(mask.sum(1).cpu(), stable=True)


def _loss(z: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    if k > 2:
        return F.cross_entropy(z, y.long())
    if k == 2:
        return F.binary_cross_entropy_with_logits(z.squeeze(-1), y)
    return F.mse_loss(z.squeeze(-1), y)


def _pair_loss(model: NoduleRiskModel, heads: nn.ModuleDict, corpora: dict[str, ModalityCorpus],
               config: FusionPretrainConfig, g: torch.Generator, recent: dict[str, list[float]]) -> torch.Tensor:
    """One batch of made-up two-modality cases (a phantom's CT inputs with a note's): every fact of both
    (recorded in ``recent`` as ``pair:<modality>:<fact>``)."""
    ct, notes = corpora["ct"], corpora["notes"]
    i_ct = torch.randint(0, len(ct), (config.batch_size,), generator=g)
    i_note = _draw(notes, config.batch_size, g)
    kw: dict[str, torch.Tensor | None] = {}
    for k in ct.inputs:
        src, idx = (notes, i_note) if k.startswith("note_") else (ct, i_ct)
        v = src.inputs[k]
        kw[k] = None if v is None else v[idx].to(config.device)
    kw["modality_mask"] = torch.ones(config.batch_size, 2, dtype=torch.bool, device=config.device)
    fused = model(**_trimmed(kw)).fused
    return (_facts_loss(heads, fused, "ct", ct, i_ct, config.device, recent, "pair:")
            + _facts_loss(heads, fused, "notes", notes, i_note, config.device, recent, "pair:"))


def _facts_loss(heads: nn.ModuleDict, fused: torch.Tensor, modality: str, corpus: ModalityCorpus, idx: torch.Tensor,
                device: str, recent: dict[str, list[float]], prefix: str = "") -> torch.Tensor:
    """Sum over ``corpus``' facts of each fact head's loss on ``fused``; each term kept in ``recent`` (last 50)."""
    loss = torch.zeros((), device=device)
    for k, classes in corpus.classes.items():
        term = _loss(heads[f"{modality}:{k}"](fused), corpus.facts[k][idx].to(device), classes)
        key = f"{prefix}{modality}:{k}"
        recent[key] = [*recent.get(key, [])[-49:], float(term.detach())]
        loss = loss + term
    return loss


def _draw(corpus: ModalityCorpus, batch_size: int, g: torch.Generator) -> torch.Tensor:
    """A batch of cases of similar note length (random cases among the 4 x batch_size nearest in length to a
    random one), so that trimming the padding pays; CT-only corpora draw uniformly."""
    n, order = len(corpus), corpus.length_order
    if order is None or n <= 4 * batch_size:
        return torch.randint(0, n, (batch_size,), generator=g)
    start = int(torch.randint(0, n - 4 * batch_size + 1, (1,), generator=g))
    pick = torch.randperm(4 * batch_size, generator=g)[:batch_size]
    return order[start + pick]


def _trimmed(kw: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    """Note padding that no case of the draw uses, cut: attention on this CPU costs the square of the width."""
    mask = kw.get("note_mask")
    if mask is None or mask.shape[1] <= 1:
        return kw
    width = max(1, int(mask.sum(1).max()))
    return {k: v[:, :width] if v is not None and k.startswith("note_") else v for k, v in kw.items()}


def pretrain_fusion(model: NoduleRiskModel, corpora: dict[str, ModalityCorpus],
                    config: FusionPretrainConfig | None = None) -> dict[str, float]:
    """Train ``model``'s trainable parameters (projections, fusion) in place so that each modality's summary
    (``FusionOutput.fused`` of a one-modality case) states its corpus' facts linearly; then even the gate.
    ``corpora`` maps "ct" / "notes" to its corpus. Returns the last 50 steps' mean loss per fact."""
    config = config or FusionPretrainConfig()
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    d = model.config.fusion.d_model
    heads = nn.ModuleDict({f"{m}:{k}": nn.Linear(d, n if n > 2 else 1)
                           for m, c in corpora.items() for k, n in c.classes.items()}).to(config.device)
    # the gate and heads are what private training (dp-train heads) learns later
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(HEAD_PREFIXES)]
    opt = torch.optim.AdamW([*params, *heads.parameters()], lr=config.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    model.train()
    recent: dict[str, list[float]] = {k: [] for k in heads}
    for _ in tqdm(range(config.steps), desc="pretrain fusion", unit="step", disable=not config.progress):
        loss = torch.zeros((), device=config.device)
        for m, c in corpora.items():
            idx = _draw(c, config.batch_size, g)
            kw = _trimmed({k: None if v is None else v[idx].to(config.device) for k, v in c.inputs.items()})
            fused = model(**kw).fused  # (B, D): one modality present, so its summary
            loss = loss + _facts_loss(heads, fused, m, c, idx, config.device, recent)
        if config.pairs and {"ct", "notes"} <= set(corpora):
            loss = loss + _pair_loss(model, heads, corpora, config, g, recent)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():  # an even gate: s_ct + s_note, the modalities' evidence adds
        last = model.fusion.gate_mlp[-1]
        assert isinstance(last, nn.Linear)
        last.weight.zero_()
        last.bias.zero_()
    model.eval()
    return {k: sum(v) / max(1, len(v)) for k, v in recent.items()}


def one_modality_inputs(n: int, modality: str, *, ct: dict[str, torch.Tensor] | None = None,
                        notes: dict[str, torch.Tensor] | None = None, ct_cells: tuple[int, int, int, int] = (64, 64, 8, 32),
                        note_width: int = 64) -> dict[str, torch.Tensor | None]:
    """Keyword inputs for ``n`` cases that have only ``modality``: the other's inputs are empty and masked."""
    mask = torch.zeros(n, 2, dtype=torch.bool)
    mask[:, 0 if modality == "ct" else 1] = True
    tp, cp, tc, cc = ct_cells
    out: dict[str, torch.Tensor | None] = {"modality_mask": mask, "ct_patch": None, "ct_context": None}
    if modality == "ct":
        assert ct is not None
        out.update(ct)
        out.update(note_ids=torch.zeros(n, 1, dtype=torch.long), note_mask=torch.zeros(n, 1, dtype=torch.long),
                   note_values=torch.zeros(n, 1), note_states=torch.zeros(n, 1, note_width))
    else:
        assert notes is not None
        out.update(notes)
        out.update(ct_position=torch.full((n, 3), 0.5), ct_patch_states=torch.zeros(n, tp, cp),
                   ct_context_states=torch.zeros(n, tc, cc))
    return out


__all__ = ["FusionPretrainConfig", "ModalityCorpus", "one_modality_inputs", "pretrain_fusion"]
