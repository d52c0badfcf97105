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
from workbench.train.dp_subsets import FUSED_HEAD_PREFIXES
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
    optimizer: str = "adamw"  # "adamw" or "sgd": SGD lets the noise of successive steps average out, where Adam's
    # per-coordinate scaling moves every weight by about lr whatever the signal (measured below, DESIGN §7)


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


def make_optimizer(params: list[torch.nn.Parameter], privacy: PrivacyConfig) -> torch.optim.Optimizer:
    if privacy.optimizer == "sgd":
        return torch.optim.SGD(params, lr=privacy.lr)
    if privacy.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=privacy.lr)
    raise ValueError(f"DP optimizer {privacy.optimizer!r}: expected adamw or sgd")


def eval_frozen(model: torch.nn.Module) -> None:
    """Train mode, except modules none of whose parameters learn: they run as at inference (no dropout), so
    the features a trained head reads are the ones it will read at prediction time."""
    model.train()
    for m in model.modules():
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            m.eval()


def head_only(model: torch.nn.Module) -> bool:
    """True when the fused head is all that learns (``dp-train = head``): everything before it is fixed."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return bool(names) and all(n.startswith(FUSED_HEAD_PREFIXES) for n in names)


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
    optimizer = optimizer or make_optimizer([p for p in model.parameters() if p.requires_grad], privacy)
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
    eval_frozen(model)
    pos_weight = pos_weight_of(train.labels) if config.class_weights else 1.0
    if note_reader_frozen(model):
        train = with_note_states(model, train)  # a frozen encoder: its states once, not once per step
    if ct_reader_frozen(model):
        train = with_ct_states(model, train)
    if head_only(model) and privacy.engine == "vmap":
        return _train_private_head(model, train, privacy, config, pos_weight)
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
    from workbench.train.dp_vmap import VmapDPOptimizer

    n = len(train)
    rate = effective_sample_rate(n, privacy.sample_rate)
    g = torch.Generator().manual_seed(config.seed)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], privacy)
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
    return _result(model, privacy, rate, seen, seconds, "vmap")


def _result(model: NoduleRiskModel, privacy: PrivacyConfig, rate: float, seen: int, seconds: float,
            engine: str) -> PrivateResult:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(privacy.noise_multiplier, rate, privacy.steps)]
    model.eval()
    return PrivateResult(privacy.steps, privacy.noise_multiplier, rate, privacy.delta,
                         float(acc.get_epsilon(privacy.delta)), seen / max(privacy.steps, 1),
                         seen / seconds if seconds else math.nan, seconds, engine)


def fused_of(model: NoduleRiskModel, data: EncodedCases, batch_size: int = 64) -> torch.Tensor:
    """(N, D) what the fused head reads for every case, the model in eval mode (fixed when only the head learns)."""
    was = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for b in data.batches(batch_size):
            if "note_states" in b:
                b["note_states"] = b["note_states"].float()
            out.append(model.forward_batch(b).fused.float())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.config.fusion.d_model)


def _train_private_head(model: NoduleRiskModel, train: EncodedCases, privacy: PrivacyConfig, config: TrainConfig,
                        pos_weight: float) -> PrivateResult:
    """DP-SGD of the fused head alone (``dp-train = head``), exactly: with every layer before it fixed (and run
    in eval mode), a case's fused vector is the same at every step, so it is computed once and each step clips
    and noises the head's per-case gradients (the weighted BCE's; the auxiliary heads do not learn, so their
    loss has no gradient here) by ``VmapDPOptimizer``'s rule. Same sampling, noise and accounting as the
    whole-model path; ``tests/train/test_private.py`` checks the two give the same weights."""
    n = len(train)
    rate = effective_sample_rate(n, privacy.sample_rate)
    g = torch.Generator().manual_seed(config.seed)
    t0 = time.perf_counter()
    fused = fused_of(model, train)  # (N, D); the frozen readers' states are in ``train`` already
    y = torch.as_tensor(train.labels, dtype=torch.float32)
    w = torch.where(y > 0.5, torch.tensor(float(pos_weight)), torch.tensor(1.0))
    head = model.fusion.head
    opt = make_optimizer([head.weight, head.bias], privacy)
    c, batch = privacy.max_grad_norm, max(1, int(n * rate))
    seen = 0
    for _ in tqdm(range(privacy.steps), desc="dp-sgd (head)", unit="step", disable=not config.progress):
        idx = torch.nonzero(torch.rand(n, generator=g) < rate).flatten()
        x = torch.cat([fused[idx], torch.ones(len(idx), 1)], 1)  # (B, D + 1): weight, then bias
        with torch.no_grad():
            z = head(fused[idx]).squeeze(-1)
            per = ((torch.sigmoid(z) - y[idx]) * w[idx])[:, None] * x  # (B, D + 1) d(weighted BCE)/d(w, b)
            scale = (c / (per.norm(dim=1) + 1e-6)).clamp(max=1.0)
            flat = (scale @ per + torch.randn(x.shape[1], generator=g) * (privacy.noise_multiplier * c)) / batch
        head.weight.grad = flat[:-1].view_as(head.weight).to(head.weight.dtype)
        head.bias.grad = flat[-1:].view_as(head.bias).to(head.bias.dtype)
        opt.step()
        opt.zero_grad(set_to_none=True)
        seen += len(idx)
    return _result(model, privacy, rate, seen, time.perf_counter() - t0, "vmap-head")
