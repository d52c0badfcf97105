"""``workbench bench model --device cuda``: training samples/s and one-case latency of the fused model on a device.

Random inputs of the real shapes (speed does not depend on content), so it runs where the DICOM stack is not
installed (the GPU machine has torch but no pydicom): it imports the model and the loss, nothing else.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from workbench.bench.common import envelope
from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.model import ModelConfig, build_model, trainable_parameters
from workbench.models.text_encoder import TextEncoderConfig
from workbench.train.loss import loss_fn


def run_model_speed(*, device: str, batch_size: int = 64, steps: int = 30) -> dict[str, Any]:
    """Training samples/s and one-case latency of the fused model on ``device``, random inputs of the real shapes.

    ``train_samples_per_s`` is the benchmark's configuration (pretrained note and CT readers frozen, their outputs
    computed once per case as the trainer does); ``train_samples_per_s_ct_trainable`` trains the CT encoder too,
    ``train_samples_per_s_text_trainable`` both encoders. The latency is one case from its images and tokens.
    """
    start = time.perf_counter()
    frozen = _speed(device, batch_size, steps, freeze_text=True, freeze_ct=True)
    ct = _speed(device, batch_size, steps, freeze_text=True, freeze_ct=False)
    trainable = _speed(device, batch_size, steps, freeze_text=False, freeze_ct=False)
    return {"device": device, **frozen, "train_samples_per_s_ct_trainable": ct["train_samples_per_s"],
            "trainable_params_ct_trainable": ct["trainable_params"],
            "train_samples_per_s_text_trainable": trainable["train_samples_per_s"],
            "trainable_params_text_trainable": trainable["trainable_params"],
            **envelope("random inputs", time.perf_counter() - start)}


def _speed(device: str, batch_size: int, steps: int, freeze_text: bool, freeze_ct: bool) -> dict[str, Any]:
    model = build_model(ModelConfig(ct=CTEncoderConfig(freeze=freeze_ct), text=TextEncoderConfig(freeze=freeze_text)))
    model = model.to(device)
    n, length = batch_size, 256
    g = torch.Generator().manual_seed(0)
    batch = {
        "ct_patch": torch.rand(n, 1, 32, 32, 32, generator=g), "ct_context": torch.rand(n, 2, 32, 32, 32, generator=g),
        "ct_position": torch.rand(n, 3, generator=g), "note_ids": torch.randint(5, len(model.tokenizer or []) or 1000, (n, length),
                                                                      generator=g),
        "note_mask": torch.ones(n, length, dtype=torch.long), "note_values": torch.zeros(n, length),
        "modality_mask": torch.ones(n, 2, dtype=torch.bool), "label": (torch.rand(n, generator=g) < 0.3).float(),
    }
    batch = {k: v.to(device) for k, v in batch.items()}
    full = batch
    with torch.no_grad():  # what the trainer caches once per case for frozen readers
        if freeze_text and model.text_encoder is not None:
            batch = {**batch, "note_states": model.text_encoder.hidden_states(batch["note_ids"], batch["note_mask"],
                                                                              batch["note_values"])}
        if freeze_ct and model.ct_encoder is not None:
            p, c = model.ct_encoder.features(batch["ct_patch"], batch["ct_context"])
            batch = {**{k: v for k, v in batch.items() if k not in ("ct_patch", "ct_context")},
                     "ct_patch_states": p, "ct_context_states": c}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    use_amp = device.startswith("cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = loss_fn(model.forward_batch(batch), batch, 2.0, 0.3)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    model.train()
    for _ in range(5):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    samples_per_s = steps * n / (time.perf_counter() - t0)
    model.eval()
    one = {k: v[:1] for k, v in full.items()}
    times = []
    with torch.no_grad():
        for i in range(60):
            sync()
            t1 = time.perf_counter()
            model.forward_batch(one)
            sync()
            if i >= 10:
                times.append((time.perf_counter() - t1) * 1000)
    return {"train_samples_per_s": samples_per_s, "batch_size": n, "note_tokens": length,
            "amp": "bfloat16" if use_amp else "none", "latency_ms_one_case_forward": statistics.median(times),
            "trainable_params": trainable_parameters(model)}
