"""The trainer's private mode: Opacus DP-SGD with Poisson sampling and a fixed number of steps.

Record-level differential privacy at a node (DESIGN §7): each step draws every case independently with chance
``sample_rate`` (Poisson), clips each case's gradient to ``max_grad_norm`` and adds Gaussian noise of
``noise_multiplier x max_grad_norm``; the privacy spent follows from (noise, rate, steps, delta) alone, which is
what the node's ledger keeps. No early stopping and no validation inside (either would look at private data
outside the accounting); class weights stay in the loss. The MoE load-balancing loss couples the cases of a batch
and is left out here.

``ModalityBias`` owns a parameter that no stock layer holds, so its per-sample gradient rule is registered
below: dL/dM[h, a, c] for case n = sum over token pairs (i in modality a, j in modality c) of dL/dbias[n, h, i, j].
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from opacus import PrivacyEngine
from opacus.grad_sample import register_grad_sampler
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from workbench.models.fusion import ModalityBias
from workbench.models.model import POSITIONAL, STATE_KEYS, NoduleRiskModel
from workbench.train.dataset import (
    EncodedCases,
    ct_reader_frozen,
    note_reader_frozen,
    with_ct_states,
    with_note_states,
)
from workbench.train.loss import loss_fn
from workbench.train.trainer import TrainConfig, pos_weight_of


@register_grad_sampler(ModalityBias)
def _modality_bias_grad_sample(layer: ModalityBias, activations: list[torch.Tensor],
                               backprops: torch.Tensor) -> dict[torch.nn.Parameter, torch.Tensor]:
    onehot = activations[0].to(backprops.dtype)  # (B, L, M)
    return {layer.M: torch.einsum("bia,bhij,bjc->bhac", onehot, backprops, onehot)}  # (B, H, M, M)


@dataclass
class PrivacyConfig:
    noise_multiplier: float = 1.0  # Gaussian noise std / max_grad_norm
    max_grad_norm: float = 1.0  # per-case gradient clip
    sample_rate: float = 0.05  # Poisson: chance of each case joining a step
    steps: int = 100  # optimizer steps in this call (fixed, whatever the data say)
    delta: float = 1e-5
    lr: float = 1e-3
    engine: str = "vmap"  # per-sample gradients: "vmap" (dp_vmap, whole-model torch.func) or "opacus" (hooks)


@dataclass
class PrivateResult:
    steps: int
    noise_multiplier: float
    sample_rate: float
    delta: float
    epsilon: float  # spent by these steps alone (RDP accountant); a ledger composes across rounds
    mean_batch: float
    samples_per_s: float
    seconds: float
    engine: str = "opacus"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _keys(data: EncodedCases) -> tuple[str, ...]:
    return (*POSITIONAL, *(k for k in STATE_KEYS if k in data.tensors))


def tensor_dataset(data: EncodedCases) -> TensorDataset:
    t = data.tensors
    return TensorDataset(*(t[k].float() if k in ("ct_patch", "ct_context") else t[k] for k in _keys(data)),
                         t["label"])


def as_batch(row: list[torch.Tensor] | tuple[torch.Tensor, ...],
             keys: tuple[str, ...] = POSITIONAL) -> dict[str, torch.Tensor]:
    """A loader row (``tensor_dataset`` of data whose ``_keys`` are ``keys``) -> keyed batch, note padding that
    no case of the draw uses trimmed (attention is quadratic)."""
    batch = {**dict(zip(keys, row[:-1], strict=True)), "label": row[-1]}
    if len(batch["label"]):
        width = max(int(batch["note_mask"].sum(1).max().item()), 1)
        for k in ("note_ids", "note_mask", "note_values", "note_states"):
            if k in batch:
                batch[k] = batch[k][:, :width]
    return batch


def forward_private(module: Any, batch: dict[str, torch.Tensor]) -> Any:
    return module(*(batch[k] for k in POSITIONAL), **{k: batch.get(k) for k in STATE_KEYS})


def effective_sample_rate(n: int, sample_rate: float) -> float:
    """The Poisson rate Opacus really uses for ``n`` cases: 1 / (batches per epoch) of a loader of
    round(rate x n) cases per batch. Plan and account with this one, not the requested rate."""
    if n <= 0:
        return sample_rate
    batch = max(1, round(sample_rate * n))
    return 1.0 / math.ceil(n / batch)


def make_private(model: NoduleRiskModel, data: EncodedCases, privacy: PrivacyConfig,
                 optimizer: torch.optim.Optimizer | None = None) -> tuple[Any, Any, DataLoader, PrivacyEngine]:
    """Opacus' make_private over the model, with a Poisson loader whose expected batch is rate x N."""
    batch = max(1, round(privacy.sample_rate * len(data)))
    loader = DataLoader(tensor_dataset(data), batch_size=batch)
    optimizer = optimizer or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=privacy.lr)
    engine = PrivacyEngine(accountant="rdp")
    module, dp_optimizer, dp_loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=privacy.noise_multiplier,
        max_grad_norm=privacy.max_grad_norm, poisson_sampling=True,
    )
    return module, dp_optimizer, dp_loader, engine


def train_private(model: NoduleRiskModel, train: EncodedCases, privacy: PrivacyConfig,
                  config: TrainConfig | None = None) -> PrivateResult:
    """``privacy.steps`` DP-SGD steps on ``train``; the model's weights are updated in place."""
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    model.train()
    pos_weight = pos_weight_of(train.labels) if config.class_weights else 1.0
    if note_reader_frozen(model):
        train = with_note_states(model, train)  # a frozen encoder: its states once, not once per step
    if ct_reader_frozen(model):
        train = with_ct_states(model, train)
    # vmap needs no data-dependent control flow; the transformers encoder's masking has some, so a trainable
    # note encoder (no precomputed states) goes through Opacus' hooks
    if privacy.engine == "vmap" and (model.text_encoder is None or "note_states" in train.tensors):
        return _train_private_vmap(model, train, privacy, config, pos_weight)
    if privacy.engine == "vmap":
        privacy = PrivacyConfig(**{**privacy.__dict__, "engine": "opacus"})
    if privacy.engine != "opacus":
        raise ValueError(f"DP engine {privacy.engine!r}: expected vmap or opacus")
    module, optimizer, loader, engine = make_private(model, train, privacy)
    steps, seen = 0, 0
    t0 = time.perf_counter()
    bar = tqdm(total=privacy.steps, desc="dp-sgd", unit="step", disable=not config.progress)
    while steps < privacy.steps:
        for row in loader:
            batch = as_batch(row, _keys(train))
            optimizer.zero_grad(set_to_none=True)
            if len(batch["label"]) == 0:  # an empty Poisson draw still releases a noised (all-noise) step
                for p in model.parameters():
                    if p.requires_grad:
                        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)  # type: ignore[attr-defined]
            else:
                out = forward_private(module, batch)
                loss_fn(out, batch, pos_weight, config.aux_weight, reduction="none").mean().backward()
            optimizer.step()
            steps += 1
            seen += len(batch["label"])
            bar.update(1)
            if steps >= privacy.steps:
                break
    bar.close()
    seconds = time.perf_counter() - t0
    epsilon = engine.accountant.get_epsilon(privacy.delta)
    model.eval()
    return PrivateResult(steps, privacy.noise_multiplier, loader.sample_rate if hasattr(loader, "sample_rate")
                         else privacy.sample_rate, privacy.delta, float(epsilon), seen / max(steps, 1),
                         seen / seconds if seconds else math.nan, seconds)


def _train_private_vmap(model: NoduleRiskModel, train: EncodedCases, privacy: PrivacyConfig, config: TrainConfig,
                        pos_weight: float) -> PrivateResult:
    """The same DP-SGD with the vmap engine: Poisson draws at the effective rate Opacus would use, clipped and
    noised per step by ``VmapDPOptimizer``, epsilon from Opacus' RDP accountant over (noise, rate, steps)."""
    from opacus.accountants import RDPAccountant

    from workbench.train.dp_vmap import VmapDPOptimizer

    n = len(train)
    rate = effective_sample_rate(n, privacy.sample_rate)
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=privacy.lr)
    dp = VmapDPOptimizer(model, opt, noise_multiplier=privacy.noise_multiplier, max_grad_norm=privacy.max_grad_norm,
                         expected_batch_size=max(1, int(n * rate)), pos_weight=pos_weight,
                         aux_weight=config.aux_weight, generator=g,
                         compiled=next(model.parameters()).is_cuda)  # compiled on a GPU: 0.74x a compiled plain step
    seen = 0
    t0 = time.perf_counter()
    for _ in tqdm(range(privacy.steps), desc="dp-sgd", unit="step", disable=not config.progress):
        idx = torch.nonzero(torch.rand(n, generator=g) < rate).flatten()
        batch = train.batch(idx)
        if "note_states" in batch:
            batch["note_states"] = batch["note_states"].float()
        dp.step(batch)
        seen += len(idx)
    seconds = time.perf_counter() - t0
    acc = RDPAccountant()
    acc.history = [(privacy.noise_multiplier, rate, privacy.steps)]
    model.eval()
    return PrivateResult(privacy.steps, privacy.noise_multiplier, rate, privacy.delta,
                         float(acc.get_epsilon(privacy.delta)), seen / max(privacy.steps, 1),
                         seen / seconds if seconds else math.nan, seconds, "vmap")
