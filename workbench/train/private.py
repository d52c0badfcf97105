"""The trainer's private mode: Opacus DP-SGD with Poisson sampling and a fixed number of steps.

Record-level differential privacy at a node (docs/architecture.md §7): each step draws every case independently with chance
``sample_rate`` (Poisson), clips each case's gradient to ``max_grad_norm`` and adds Gaussian noise of
``noise_multiplier x max_grad_norm``; the privacy spent follows from (noise, rate, steps, delta) alone, which is
what the node's ledger keeps. No early stopping and no validation inside (either would look at private data
outside the accounting). The MoE load-balancing loss couples the cases of a batch and is left out here.

What the guarantee also needs, and this module does:
- the draws and the noise are secret: one generator per call from OS entropy (``dp_random.dp_generator``), for
  every engine (Opacus included: its loader and optimizer get that generator); ``PrivacyConfig.seed`` makes it
  replayable for tests, and the result says ``secure_randomness: False``;
- nothing in the update depends on the private data except through the clipped, noised sum: the sampling rate
  is the configured one exactly (not derived from the number of cases), the sum is divided by a public
  ``expected_batch`` (a federated node passes rate x its DP-released case count), and the class weight comes
  from a public prior (``class_prior``), not from the node's labels.

``ModalityBias`` owns a parameter that no stock layer holds, so its per-sample gradient rule is registered
below: dL/dM[h, a, c] for case n = sum over token pairs (i in modality a, j in modality c) of dL/dbias[n, h, i, j].
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from opacus.grad_sample import register_grad_sampler
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from workbench.errors import WorkbenchError
from workbench.models.fusion import ModalityBias
from workbench.models.model import POSITIONAL, STATE_KEYS, NoduleRiskModel
from workbench.runtime.encode import (
    EncodedCases,
    ct_reader_frozen,
    note_reader_frozen,
    with_ct_states,
    with_note_states,
)
from workbench.train.accounting import epsilon_of
from workbench.train.dp_random import dp_generator
from workbench.train.dp_subsets import FUSED_HEAD_PREFIXES
from workbench.train.loss import loss_fn
from workbench.train.trainer import TrainConfig

ENGINES = ("auto", "vmap", "opacus")


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
    # per-sample gradients: "vmap" (dp_vmap, whole-model torch.func; the exact head path when only the fused head
    # learns), "opacus" (hooks), or "auto" (vmap where it can run, else Opacus). Asking for vmap where it cannot
    # run is an error, not a silent switch.
    engine: str = "auto"
    optimizer: str = "adamw"  # "adamw" or "sgd": SGD lets the noise of successive steps average out, where Adam's
    # per-coordinate scaling moves every weight by about lr whatever the signal (measured below, docs/architecture.md §7)
    seed: int | None = None  # None: draws and noise from OS entropy (private); an int replays them (NOT private)
    class_prior: float = 0.25  # public malignant prevalence: class weight (1 - p) / p, never the node's labels
    expected_batch: float | None = None  # the public divisor of the noised sum; None: rate x cases (standalone use)


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
    secure_randomness: bool = True  # False: seeded draws and noise (replayable: not private)

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


def public_pos_weight(privacy: PrivacyConfig, class_weights: bool = True) -> float:
    """The malignant-class weight under DP: from the public prior, so the loss holds no statistic of the labels."""
    if not class_weights:
        return 1.0
    if not 0 < privacy.class_prior < 1:
        raise WorkbenchError(f"DP class prior {privacy.class_prior}: must lie in (0, 1)")
    return (1.0 - privacy.class_prior) / privacy.class_prior


def expected_batch_of(privacy: PrivacyConfig, n: int) -> float:
    return float(privacy.expected_batch) if privacy.expected_batch else max(1.0, privacy.sample_rate * n)


def make_private(model: NoduleRiskModel, data: EncodedCases, privacy: PrivacyConfig,
                 optimizer: torch.optim.Optimizer | None = None,
                 generator: torch.Generator | None = None) -> tuple[Any, Any, DataLoader]:
    """Opacus' pieces over the model, assembled by hand so that the Poisson loader (rate ``sample_rate``
    exactly) and the noise both draw from ``generator`` (``make_private`` would take the loader's from torch's
    global generator unless Opacus' secure mode, which needs torchcsprng, is on)."""
    from opacus import GradSampleModule
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer

    generator = generator if generator is not None else dp_generator(privacy.seed)
    loader = DPDataLoader(tensor_dataset(data), sample_rate=privacy.sample_rate, generator=generator)
    optimizer = optimizer or make_optimizer([p for p in model.parameters() if p.requires_grad], privacy)
    module = GradSampleModule(model)
    module.forbid_grad_accumulation()
    dp_optimizer = DPOptimizer(optimizer, noise_multiplier=privacy.noise_multiplier,
                               max_grad_norm=privacy.max_grad_norm,
                               expected_batch_size=max(1, round(expected_batch_of(privacy, len(data)))),
                               generator=generator)
    return module, dp_optimizer, loader


def choose_engine(model: NoduleRiskModel, train: EncodedCases, requested: str) -> str:
    """The per-sample-gradient engine for this model and data, or an error naming why the requested one cannot
    run. ``vmap-head`` is the exact head-only path (everything before the fused head fixed)."""
    if requested not in ENGINES:
        raise WorkbenchError(f"DP engine {requested!r}: expected one of {', '.join(ENGINES)}")
    # vmap needs no data-dependent control flow; the transformers encoder's masking has some, so a trainable
    # note encoder (no precomputed states) can only go through Opacus' hooks
    vmap_ok = model.text_encoder is None or "note_states" in train.tensors
    if requested == "opacus":
        return "opacus"
    if head_only(model):
        return "vmap-head"
    if vmap_ok:
        return "vmap"
    if requested == "vmap":
        raise WorkbenchError("DP engine 'vmap' cannot run here: the note encoder is trainable, and its attention "
                             "masking branches on the data, which torch.func.vmap cannot trace; freeze the note "
                             "reader (its states are then computed once) or ask for engine 'opacus' (or 'auto')")
    return "opacus"


def train_private(model: NoduleRiskModel, train: EncodedCases, privacy: PrivacyConfig,
                  config: TrainConfig | None = None) -> PrivateResult:
    """``privacy.steps`` DP-SGD steps on ``train``; the model's weights are updated in place."""
    config = config or TrainConfig()
    torch.manual_seed(config.seed)  # model-side randomness (dropout): not part of the mechanism
    eval_frozen(model)
    pos_weight = public_pos_weight(privacy, config.class_weights)
    if note_reader_frozen(model):
        train = with_note_states(model, train)  # a frozen encoder: its states once, not once per step
    if ct_reader_frozen(model):
        train = with_ct_states(model, train)
    engine = choose_engine(model, train, privacy.engine)
    generator = dp_generator(privacy.seed)  # the one source of this release's draws and noise
    if engine == "vmap-head":
        return _train_private_head(model, train, privacy, config, pos_weight, generator)
    if engine == "vmap":
        return _train_private_vmap(model, train, privacy, config, pos_weight, generator)
    module, optimizer, loader = make_private(model, train, privacy, generator=generator)
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
    module._close()  # the hooks off again: the caller gets its plain model back
    return _result(model, privacy, privacy.sample_rate, seen, time.perf_counter() - t0, "opacus")


def _train_private_vmap(model: NoduleRiskModel, train: EncodedCases, privacy: PrivacyConfig, config: TrainConfig,
                        pos_weight: float, g: torch.Generator) -> PrivateResult:
    """The same DP-SGD with the vmap engine: Poisson draws at rate ``sample_rate``, clipped and noised per step
    by ``VmapDPOptimizer``, draws and noise from ``g``; epsilon from the ledger's accountant."""
    from workbench.train.dp_vmap import VmapDPOptimizer

    n = len(train)
    rate = privacy.sample_rate
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], privacy)
    dp = VmapDPOptimizer(model, opt, noise_multiplier=privacy.noise_multiplier, max_grad_norm=privacy.max_grad_norm,
                         expected_batch_size=expected_batch_of(privacy, n), pos_weight=pos_weight,
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
    model.eval()
    return PrivateResult(privacy.steps, privacy.noise_multiplier, rate, privacy.delta,
                         epsilon_of([(privacy.noise_multiplier, rate, privacy.steps)], privacy.delta),
                         seen / max(privacy.steps, 1), seen / seconds if seconds else math.nan, seconds, engine,
                         secure_randomness=privacy.seed is None)


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


_FUSED: dict[int, tuple[EncodedCases, torch.Tensor, torch.Tensor]] = {}
FIXED_RTOL = 1e-5  # FedAvg's mean of identical weights can move them by an ulp: still the same layers


def _below_head(model: NoduleRiskModel) -> torch.Tensor:
    head = {id(p) for p in model.fusion.head.parameters()}
    return torch.cat([p.detach().float().flatten().cpu() for p in model.parameters() if id(p) not in head])


def fixed_fused(model: NoduleRiskModel, data: EncodedCases) -> torch.Tensor:
    """``fused_of`` for a head-only DP round, computed again only when the layers below the head differ from the
    last round's on these cases (a node's rounds under ``dp-train = head``: every layer below the head is fixed, so
    a node's fused vectors are the same in every round). Keyed by the cases object, checked against the weights."""
    below = _below_head(model)
    kept = _FUSED.get(id(data))
    if (kept is not None and kept[0] is data and kept[1].shape == below.shape
            and torch.allclose(kept[1], below, rtol=FIXED_RTOL, atol=1e-8)):
        return kept[2]
    fused = fused_of(model, data)
    while len(_FUSED) >= 8:  # a simulation's worker serves several nodes in turn (the cases are held: no id reuse)
        _FUSED.pop(next(iter(_FUSED)))
    _FUSED[id(data)] = (data, below, fused)
    return fused


def _train_private_head(model: NoduleRiskModel, train: EncodedCases, privacy: PrivacyConfig, config: TrainConfig,
                        pos_weight: float, g: torch.Generator) -> PrivateResult:
    """DP-SGD of the fused head alone (``dp-train = head``), exactly: with every layer before it fixed (and run
    in eval mode), a case's fused vector is the same at every step, so it is computed once and each step clips
    and noises the head's per-case gradients (the weighted BCE's; the auxiliary heads do not learn, so their
    loss has no gradient here) by ``VmapDPOptimizer``'s rule. Same sampling, noise and accounting as the
    whole-model path; ``tests/train/test_private.py`` checks the two give the same weights."""
    n = len(train)
    rate = privacy.sample_rate
    t0 = time.perf_counter()
    fused = fixed_fused(model, train)  # (N, D); the frozen readers' states are in ``train`` already
    y = torch.as_tensor(train.labels, dtype=torch.float32)
    w = torch.where(y > 0.5, torch.tensor(float(pos_weight)), torch.tensor(1.0))
    head = model.fusion.head
    opt = make_optimizer([head.weight, head.bias], privacy)
    c, batch = privacy.max_grad_norm, expected_batch_of(privacy, n)
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
