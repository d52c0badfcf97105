"""``workbench bench explain --device cuda``: the median full explanation of one case on a device.

A full explanation is what ``workbench explain`` computes (docs/architecture.md §8): CT Integrated Gradients with 32 steps,
note Layer Integrated Gradients with 32 steps, gate and attention rollout; Occlusion is left out. Inputs are
random of the real shapes (a 32^3 patch, a 32^3 two-channel context, a note of ``note_tokens`` tokens): the
time does not depend on their content, so this runs where the DICOM stack is not installed. ``--model DIR``
times a saved model (the benchmark's FedAvg model, say); without it a model of the default configuration.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from workbench.bench.common import envelope


def _random_case(g: torch.Generator, vocab: int, note_tokens: int, device: str) -> dict[str, torch.Tensor]:
    batch = {"ct_patch": torch.rand(1, 1, 32, 32, 32, generator=g), "ct_context": torch.rand(1, 2, 32, 32, 32, generator=g),
             "ct_position": torch.rand(1, 3, generator=g), "note_ids": torch.randint(5, vocab, (1, note_tokens), generator=g),
             "note_mask": torch.ones(1, note_tokens, dtype=torch.long), "note_values": torch.zeros(1, note_tokens),
             "modality_mask": torch.ones(1, 2, dtype=torch.bool)}
    return {k: v.to(device) for k, v in batch.items()}


def _time(fn: Any, device: str, n: int, warmup: int, g: torch.Generator, vocab: int, note_tokens: int) -> dict[str, float]:
    times = []
    t_first = time.perf_counter()
    for i in range(n + warmup):
        batch = _random_case(g, vocab, note_tokens, device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(batch, f"random-{i}")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i == 0:
            first = time.perf_counter() - t_first
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": statistics.median(times), "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))],
            "first_call_s": first}


def run_explain_speed(*, device: str, model_dir: str | None = None, n: int = 30, warmup: int = 5,
                      note_tokens: int = 190) -> dict[str, Any]:
    """Eager ``explain`` and ``FastExplainer`` (compiled; with and without CUDA graphs), side by side."""
    from workbench.explain.attributions import explain
    from workbench.explain.fast import FastExplainer
    from workbench.models.model import ModelConfig, build_model, load_model

    start = time.perf_counter()
    model = (load_model(model_dir) if model_dir else build_model(ModelConfig())).to(device).eval()
    g = torch.Generator().manual_seed(0)
    vocab = len(model.tokenizer or []) or 1000
    runs = {"eager": _time(lambda b, c: explain(model, b, c, steps=32), device, n, warmup, g, vocab, note_tokens)}
    print(f"eager: {runs['eager']}", file=sys.stderr, flush=True)
    for name, mode in (("compiled", None), ("compiled_cudagraphs", "reduce-overhead")):
        try:
            fast = FastExplainer(model, device, mode=mode)
            runs[name] = _time(lambda b, c, fast=fast: fast.explain(b, c, steps=32), device, n, warmup, g, vocab,
                               note_tokens)
        except Exception as exc:  # noqa: BLE001 - a compiler failure is reported, the eager figure stands
            runs[name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        print(f"{name}: {runs[name]}", file=sys.stderr, flush=True)
    best = min((r["median_ms"], k) for k, r in runs.items() if "median_ms" in r)
    key = "explain_ms_gpu" if device.startswith("cuda") else "explain_ms_cpu"
    return {"device": device, key: best[0], f"{key}_mode": best[1], "runs": runs,
            "n": n, "note_tokens": note_tokens, "note_width_compiled": model.config.text.max_length, "ig_steps": 32,
            "model": model_dir or "default configuration", **envelope("random inputs", time.perf_counter() - start)}


__all__ = ["run_explain_speed"]
