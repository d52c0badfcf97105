"""The one local trainer: ``workbench train`` calls it, and (later) each federated node does.

AdamW with linear warm-up and cosine decay, class weights in the loss (no resampling, so the same code runs
under DP), modality dropout (a case sometimes loses its CT or its note in training, so the model answers
without either), early stopping on the ``val`` split's AUROC, atomic per-epoch checkpoints a killed run
resumes from, and bfloat16 autocast on a GPU. Seeded: the same data and config give the same weights on the
same machine.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from workbench.atomic import atomic_write
from workbench.metrics import auroc
from workbench.models.model import NoduleRiskModel
from workbench.runtime.encode import (
    EncodedCases,
    ct_reader_frozen,
    note_reader_frozen,
    with_ct_states,
    with_note_states,
)
from workbench.runtime.inference import predict_logits, to_device
from workbench.train.loss import loss_fn


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05  # share of all steps spent warming up linearly from 0
    schedule: str = "cosine"  # "cosine" (warm-up then cosine decay) or "constant" (a federated round's local steps)
    class_weights: bool = True  # weigh malignant cases by n_benign / n_malignant in the loss
    modality_dropout: float = 0.2  # per case with both modalities: chance to hide one of them (either, 50/50)
    aux_weight: float = 0.3  # loss on each modality summary read alone (keeps each summary meaningful)
    gate_weight: float = 1.0  # pull the gate towards each modality's evidence strength (see evidence_gate_target)
    gate_tau: float = 0.3  # temperature of that target (in standard deviations of each head)
    patience: int = 8  # epochs without a better val AUROC before stopping (0: never stop early)
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # bfloat16 autocast when the device is a GPU
    grad_clip: float = 1.0  # global norm clip (the non-private path)
    cache_note_states: bool = True  # frozen readers run once per case, not once per epoch (with_note_states, _ct_)
    proximal_mu: float = 0.0  # FedProx: mu/2 ||w - w_start||^2 keeps a node's update near the global model
    augment: bool = True  # random flips of the nodule patch along each axis (nodule shape has no handedness)
    progress: bool = True


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_auroc: float = float("nan")
    stopped_early: bool = False
    samples_per_s: float = float("nan")  # training throughput (forward + backward + step), val excluded
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pos_weight_of(labels: np.ndarray) -> float:
    pos = float((labels > 0.5).sum())
    neg = float((labels <= 0.5).sum())
    return neg / pos if pos > 0 else 1.0


def with_modality_dropout(batch: dict[str, torch.Tensor], p: float, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Hide one modality of a case with both, with chance ``p``; the inputs stay, the mask hides them."""
    if p <= 0:
        return batch
    mask = batch["modality_mask"].clone()
    both = mask.all(1)
    drop = (torch.rand(len(mask), generator=g) < p) & both
    which = torch.rand(len(mask), generator=g) < 0.5
    mask[drop & which, 0] = False
    mask[drop & ~which, 1] = False
    return {**batch, "modality_mask": mask}


def with_flips(batch: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, torch.Tensor]:
    """Flip each case's nodule patch along each spatial axis with chance 1/2 (the radial profile is unchanged;
    the convolutions stop memorising where vessels happen to leave a nodule)."""
    return {**batch, "ct_patch": flip_patches(batch["ct_patch"], g)}


def flip_patches(patch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, C, P, P, P): each case flipped along each spatial axis with chance 1/2 (a copy)."""
    flips = torch.rand(len(patch), 3, generator=g) < 0.5
    out = patch.clone()
    for axis in range(3):
        sel = flips[:, axis]
        if sel.any():
            out[sel] = out[sel].flip(axis + 2)
    return out


def lr_lambda(total_steps: int, warmup_frac: float):  # noqa: ANN201 - a LambdaLR function
    warmup = max(1, int(total_steps * warmup_frac))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return f


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def train_model(model: NoduleRiskModel, train: EncodedCases, val: EncodedCases | None, config: TrainConfig,
                checkpoint_dir: str | Path | None = None) -> TrainResult:
    """Train in place; on return the model holds the best-on-val weights (the last ones without ``val``)."""
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    device = config.device
    model.to(device).train()
    if config.cache_note_states and note_reader_frozen(model):
        train = with_note_states(model, train)
        val = with_note_states(model, val) if val is not None else None
    if config.cache_note_states and ct_reader_frozen(model):
        train = with_ct_states(model, train)
        val = with_ct_states(model, val) if val is not None else None
    labels = train.labels
    pos_weight = pos_weight_of(labels) if config.class_weights else 1.0
    steps_per_epoch = max(1, math.ceil(len(train) / config.batch_size))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = lr_lambda(config.epochs * steps_per_epoch, config.warmup_frac) if config.schedule == "cosine" \
        else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    start_epoch, since_best = 0, 0
    ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if ckpt is not None and ckpt.exists():  # resume a killed run where it stopped
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        g.set_state(state["generator"])
        best_state, start_epoch, since_best = state["best_state"], state["epoch"] + 1, state["since_best"]
        result = TrainResult(**state["result"])
    use_amp = config.amp and device.startswith("cuda")
    anchor = [p.detach().clone() for p in params] if config.proximal_mu > 0 else None
    train_seconds, train_samples = 0.0, 0
    t_start = time.perf_counter()
    bar = tqdm(range(start_epoch, config.epochs), desc="train", unit="epoch", disable=not config.progress,
               initial=start_epoch, total=config.epochs)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        total, n = 0.0, 0
        for batch in train.batches(config.batch_size, shuffle=True, generator=g):
            batch = with_modality_dropout(batch, config.modality_dropout, g)
            if config.augment and "ct_patch_states" not in batch:
                batch = with_flips(batch, g)
            batch = to_device(batch, device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                out = model.forward_batch(batch)
                loss = loss_fn(out, batch, pos_weight, config.aux_weight, gate_weight=config.gate_weight,
                               gate_tau=config.gate_tau)
                if anchor is not None:
                    loss = loss + 0.5 * config.proximal_mu * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor,
                                                                                                      strict=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch["label"])
            n += len(batch["label"])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        train_samples += n
        row = {"epoch": epoch, "loss": total / max(n, 1), "lr": scheduler.get_last_lr()[0]}
        if val is not None and len(val):
            pv = predict_logits(model, val, device=device)
            row["val_auroc"] = auroc(val.labels, pv["logits"])
            if not (row["val_auroc"] <= result.best_val_auroc):  # first epoch (nan) or better
                result.best_val_auroc, result.best_epoch, since_best = row["val_auroc"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
        else:
            result.best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
        result.history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if ckpt is not None:
            _save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "scheduler": scheduler.state_dict(), "generator": g.get_state(),
                                    "best_state": best_state, "epoch": epoch, "since_best": since_best,
                                    "result": result.to_dict()})
        if config.patience and since_best >= config.patience:
            result.stopped_early = True
            break
    model.load_state_dict(best_state)
    model.eval()
    result.samples_per_s = train_samples / train_seconds if train_seconds else float("nan")
    result.seconds = time.perf_counter() - t_start
    return result
