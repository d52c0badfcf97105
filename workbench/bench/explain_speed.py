"""``workbench bench explain --device cuda``: the median full explanation of one case on a device.

A full explanation is what ``workbench explain`` computes (DESIGN §8): CT Integrated Gradients with 32 steps,
note Layer Integrated Gradients with 32 steps, gate and attention rollout; Occlusion is left out. Inputs are
random of the real shapes (a 32^3 patch, a 32^3 two-channel context, a note of ``note_tokens`` tokens): the
time does not depend on their content, so this runs where the DICOM stack is not installed. ``--model DIR``
times a saved model (the benchmark's FedAvg model, say); without it a model of the default configuration.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from workbench.bench.common import envelope


def run_explain_speed(*, device: str, model_dir: str | None = None, n: int = 30, warmup: int = 5,
                      note_tokens: int = 190) -> dict[str, Any]:
    from workbench.explain.attributions import explain
    from workbench.models.model import ModelConfig, build_model, load_model

    start = time.perf_counter()
    model = (load_model(model_dir) if model_dir else build_model(ModelConfig())).to(device).eval()
    g = torch.Generator().manual_seed(0)
    vocab = len(model.tokenizer or []) or 1000
    times = []
    for i in range(n + warmup):
        batch = {"ct_patch": torch.rand(1, 1, 32, 32, 32, generator=g), "ct_context": torch.rand(1, 2, 32, 32, 32, generator=g),
                 "ct_position": torch.rand(1, 3, generator=g),
                 "note_ids": torch.randint(5, vocab, (1, note_tokens), generator=g),
                 "note_mask": torch.ones(1, note_tokens, dtype=torch.long), "note_values": torch.zeros(1, note_tokens),
                 "modality_mask": torch.ones(1, 2, dtype=torch.bool)}
        batch = {k: v.to(device) for k, v in batch.items()}
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        explain(model, batch, f"random-{i}", steps=32)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    key = "explain_ms_gpu" if device.startswith("cuda") else "explain_ms_cpu"
    return {"device": device, key: statistics.median(times), f"{key}_p90": sorted(times)[int(0.9 * (len(times) - 1))],
            "n": n, "note_tokens": note_tokens, "ig_steps": 32, "model": model_dir or "default configuration",
            **envelope("random inputs", time.perf_counter() - start)}


__all__ = ["run_explain_speed"]
