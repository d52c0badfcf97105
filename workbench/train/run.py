"""Training a RUN folder: train on sites' ``train`` split, stop on ``val``, calibrate on ``val``, evaluate on ``test``.

RUN/
  model/              weights, config, tokenizer, MODEL_CARD.md (``workbench.models.save_model``)
  calibration.json    prior correction for the class weights + temperature fitted on val
  train_log.json      per-epoch history, throughput, sites and case counts
  metrics_val.json    val metrics after calibration
  training_curve.png  loss and val AUROC per epoch
  .checkpoint/        the trainer's resumable checkpoint (removed when training finishes)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_write
from workbench.data.cache import PreprocessCache, default_cache_dir
from workbench.errors import WorkbenchError
from workbench.jsonout import write_json
from workbench.metrics import risk_metrics
from workbench.models.model import ModelConfig, build_model, save_model, trainable_parameters
from workbench.runtime.calibration import Calibration, fit_calibration
from workbench.runtime.encode import EncodedCases, encode_cases
from workbench.runtime.inference import predict_logits
from workbench.runtime.run import cases_of
from workbench.train.trainer import TrainConfig, TrainResult, pos_weight_of, train_model


def save_training_curve(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["loss"] for h in history], label="train loss", color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if any("val_auroc" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(ep, [h.get("val_auroc", np.nan) for h in history], label="val AUROC", color="tab:orange")
        ax2.set_ylabel("val AUROC")
    ax.set_title("training")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def train_run(
    site_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a model on ``site_dirs`` into the RUN folder ``out``; returns the training log."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig(progress=progress)
    cache = PreprocessCache(cache_dir if cache_dir is not None else default_cache_dir())
    model = build_model(model_config)
    assert model.tokenizer is not None
    def encode(split: str) -> EncodedCases:
        assert model.tokenizer is not None
        return encode_cases(cases_of(site_dirs, [split]), model.tokenizer, cache=cache, modalities=model.modalities,
                            progress=progress, max_length=model_config.text.max_length, desc=f"encode {split}")

    train, val = encode("train"), encode("val")
    n_pos = int((train.labels == 1).sum())
    n_neg = int((train.labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise WorkbenchError(f"{', '.join(map(str, site_dirs))}: the train split needs labelled cases of both classes "
                             f"(found {n_pos} malignant, {n_neg} benign among {len(train)} usable cases)")
    result: TrainResult = train_model(model, train, val if len(val) else None, train_config, out / ".checkpoint")
    pv = predict_logits(model, val, device=train_config.device) if len(val) else {"logits": np.zeros(0)}
    pos_weight = pos_weight_of(train.labels) if train_config.class_weights else 1.0
    calibration = fit_calibration(pv["logits"], val.labels, pos_weight) if len(val) else Calibration(
        logit_shift=float(np.log(pos_weight)))
    model.cpu()
    save_model(model, out / "model")
    write_json(out / "calibration.json", calibration.to_dict())
    log = {
        "modalities": list(model.modalities),
        "sites": sorted(set(train.sites)),
        "n_train": len(train),
        "n_val": len(val),
        "refused": train.refused + val.refused,
        "trainable_params": trainable_parameters(model),
        "train_config": train_config.__dict__,
        "model_config": model.config.to_saved_dict(),  # as model/config.json: resolved, versioned, no machine path
        **result.to_dict(),
    }
    write_json(out / "train_log.json", log)
    if len(val):
        write_json(out / "metrics_val.json", risk_metrics(val.labels, calibration.apply(pv["logits"])))
    save_training_curve(result.history, out / "training_curve.png")
    shutil.rmtree(out / ".checkpoint", ignore_errors=True)
    return log


