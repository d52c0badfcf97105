"""What differential privacy costs per step: a DP-SGD step against a plain step, side by side, same batch.

Both steps train the same parameters on the same batch (the frozen note reader's states precomputed for both),
so the ratio is the price of per-sample gradients, clipping and noise alone. The DP step is Opacus'
(``GradSampleModule`` + ``DPOptimizer``: what ``make_private`` assembles; Poisson sampling and accounting do not
change a step's cost) or the workbench's ``vmap`` engine (``dp_vmap``). Variants: which parameters DP trains
(``all`` trainable, or ``fusion`` with both encoders frozen) and the per-sample gradient engine (``vmap``;
Opacus ``hooks``; Opacus ``functorch``, its per-layer ``torch.func``).
Imports torch, opacus and the model only, so it runs on the GPU machine (random inputs of the real shapes).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

from workbench.models.model import POSITIONAL, NoduleRiskModel
from workbench.train.dp_subsets import freeze_for_dp
from workbench.train.loss import loss_fn


def random_batch(model: NoduleRiskModel, n: int, note_tokens: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the real shapes and dtypes (content does not change speed), note states included."""
    g = torch.Generator().manual_seed(seed)
    hidden = model.text_encoder.encoder.config.hidden_size if model.text_encoder is not None else 64
    return {
        "ct_patch": torch.rand(n, 1, 32, 32, 32, generator=g), "ct_context": torch.rand(n, 2, 32, 32, 32, generator=g),
        "ct_position": torch.rand(n, 3, generator=g),
        "note_ids": torch.randint(5, 1000, (n, note_tokens), generator=g),
        "note_mask": torch.ones(n, note_tokens, dtype=torch.long), "note_values": torch.zeros(n, note_tokens),
        "note_states": torch.randn(n, note_tokens, hidden, generator=g),
        "modality_mask": torch.ones(n, 2, dtype=torch.bool), "label": (torch.rand(n, generator=g) < 0.3).float(),
    }


def _timed(step, device: str, steps: int, warmup: int) -> float:  # noqa: ANN001 - a no-argument callable
    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def dp_step_ratio(model: NoduleRiskModel, batch: dict[str, torch.Tensor], *, device: str = "cpu",
                  engine: str = "hooks", steps: int = 10, warmup: int = 3, noise_multiplier: float = 1.0,
                  max_grad_norm: float = 1.0, lr: float = 1e-3, compiled: bool = False) -> dict[str, Any]:
    """Median seconds of a plain and a DP step on ``batch``; the model's trainable set is what both train."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    batch = {k: v.to(device) for k, v in batch.items()}
    n = len(batch["label"])

    plain_model = copy.deepcopy(model).to(device).train()
    params = [p for p in plain_model.parameters() if p.requires_grad]
    plain_forward = torch.compile(plain_model) if compiled else plain_model
    opt = torch.optim.AdamW(params, lr=lr)

    def plain() -> None:
        out = plain_forward(*(batch[k] for k in POSITIONAL), note_states=batch["note_states"])
        loss = loss_fn(out, batch, 2.0, 0.3, reduction="none").mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if engine == "vmap":
        from workbench.train.dp_vmap import make_vmap_step

        vmap_step = make_vmap_step(copy.deepcopy(model).to(device).train(), lr, noise_multiplier=noise_multiplier,
                                   max_grad_norm=max_grad_norm, expected_batch_size=n, pos_weight=2.0,
                                   compiled=compiled)

        t_plain = _timed(plain, device, steps, warmup)
        t_dp = _timed(lambda: vmap_step(batch), device, steps, warmup)
        return {"engine": engine, "amp": "none", "compiled": compiled, "batch_size": n,
                "trainable_params": sum(p.numel() for p in params),
                "plain_step_ms": t_plain * 1000, "dp_step_ms": t_dp * 1000, "dp_step_ratio": t_dp / t_plain}

    dp_model = GradSampleModule(copy.deepcopy(model).to(device).train(), force_functorch=engine == "functorch")
    dp_params = [p for p in dp_model.parameters() if p.requires_grad]
    dp_opt = DPOptimizer(torch.optim.AdamW(dp_params, lr=lr), noise_multiplier=noise_multiplier,
                         max_grad_norm=max_grad_norm, expected_batch_size=n)

    def private() -> None:
        out = dp_model(*(batch[k] for k in POSITIONAL), note_states=batch["note_states"])
        loss = loss_fn(out, batch, 2.0, 0.3, reduction="none").mean()
        dp_opt.zero_grad(set_to_none=True)
        loss.backward()
        dp_opt.step()

    t_plain = _timed(plain, device, steps, warmup)
    t_dp = _timed(private, device, steps, warmup)
    return {"engine": engine, "amp": "none", "batch_size": n, "trainable_params": sum(p.numel() for p in params),
            "plain_step_ms": t_plain * 1000, "dp_step_ms": t_dp * 1000, "dp_step_ratio": t_dp / t_plain}


NODE_DP_TRAIN = "head"  # what the federated benchmark's DP nodes train (its plan's dp_train)


def run_dp_speed(*, device: str, batch_size: int = 64, note_tokens: int = 256, steps: int = 20) -> dict[str, Any]:
    """``workbench bench federated --device cuda``: the DP/plain step ratio on ``device`` for each trainable set
    and per-sample gradient engine; ``dp_step_ratio`` is the configuration the nodes train with
    (``NODE_DP_TRAIN``, vmap engine, the whole model's forward on both sides), compiled or not, whichever is better (the same setting for both steps). Random
    inputs of the real shapes, note reader frozen (its states precomputed, as in training)."""
    from workbench.bench.common import envelope
    from workbench.models.model import ModelConfig, build_model
    from workbench.models.text_encoder import TextEncoderConfig

    start = time.perf_counter()
    rows = []
    # bfloat16 autocast inside vmap(grad) fails in a convolution backward (input/grad dtypes), so fp32 throughout;
    # cuDNN autotuning changed nothing (measured); torch.compile is tried for both steps alike (vmap engine
    # only: Opacus' hooks do not compile)
    for train, engine, compiled in (("head", "vmap", False), ("head", "vmap", True), ("head", "hooks", False),
                                    ("all", "vmap", False), ("all", "vmap", True), ("all", "hooks", False),
                                    ("fusion", "vmap", False), ("fusion", "vmap", True), ("fusion", "hooks", False)):
        model = build_model(ModelConfig(text=TextEncoderConfig(freeze=True)))
        freeze_for_dp(model, train)
        try:
            r = dp_step_ratio(model, random_batch(model, batch_size, note_tokens), device=device, engine=engine,
                              steps=steps, warmup=5, compiled=compiled)
        except Exception as e:  # noqa: BLE001 - one engine failing must not hide the others
            r = {"engine": engine, "error": f"{type(e).__name__}: {e}"[:300]}
        rows.append({"dp_train": train, **r})
    main = min((r for r in rows if r["dp_train"] == NODE_DP_TRAIN and r["engine"] == "vmap" and "dp_step_ratio" in r),
               key=lambda r: r["dp_step_ratio"], default={})
    return {"device": device, "dp_step_ratio": main.get("dp_step_ratio"), "variants": rows,
            "batch_size": batch_size, "note_tokens": note_tokens,
            **envelope("random inputs", time.perf_counter() - start)}
