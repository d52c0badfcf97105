"""DP-ready, proven (docs/architecture.md §6): Opacus' per-sample gradients of the full model equal a loop over batches of one."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.cases import random_cases, tiny_config
from workbench.errors import WorkbenchError
from workbench.models import FusionConfig, ModelConfig, build_model
from workbench.train.dp_random import dp_generator
from workbench.train.loss import loss_fn
from workbench.train.private import POSITIONAL, PrivacyConfig, as_batch, make_private, train_private


def test_opacus_per_sample_gradients_match_a_loop_of_batches_of_one() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    reference = build_model(tiny_config())
    reference.load_state_dict(model.state_dict())
    data = random_cases(6)
    # sample_rate 1: the Poisson loader almost surely draws every case; we read the batch it drew
    module, optimizer, loader = make_private(model, data, PrivacyConfig(sample_rate=1.0, noise_multiplier=0.0,
                                                                           max_grad_norm=1e6))
    model.train()
    batch = as_batch(next(iter(loader)))
    assert len(batch["label"]) >= 4
    out = module(*(batch[k] for k in POSITIONAL))
    loss_fn(out, batch, 2.0, 0.3, reduction="none").mean().backward()
    names = dict(model.named_parameters())
    per_sample = {n: p.grad_sample for n, p in names.items() if p.requires_grad}
    assert all(g is not None for g in per_sample.values()), [n for n, g in per_sample.items() if g is None]
    ref_params = dict(reference.named_parameters())
    reference.train()
    worst = 0.0
    for i in range(len(batch["label"])):
        one = {k: v[i:i + 1] for k, v in batch.items()}
        reference.zero_grad()
        loss_fn(reference.forward_batch(one), one, 2.0, 0.3).backward()
        for n, gs in per_sample.items():
            g_ref = ref_params[n].grad if ref_params[n].grad is not None else torch.zeros_like(ref_params[n])
            worst = max(worst, float((gs[i] - g_ref).abs().max()))
    print("worst per-sample gradient difference", worst, "over", len(per_sample), "parameters")
    assert worst < 1e-5, worst
    # the modality bias M got a real per-sample gradient, not zeros
    m_name = next(n for n in per_sample if n.endswith("attn.bias.M"))
    assert per_sample[m_name].abs().sum() > 0
    optimizer.step()


def test_private_training_runs_a_fixed_number_of_poisson_steps_and_reports_epsilon() -> None:
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    torch.manual_seed(0)
    model = build_model(tiny_config())
    data = random_cases(6)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    privacy = PrivacyConfig(noise_multiplier=1.1, max_grad_norm=1.0, sample_rate=0.5, steps=5, delta=1e-3)
    from workbench.train.trainer import TrainConfig

    res = train_private(model, data, privacy, TrainConfig(progress=False))
    assert res.steps == 5
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    rdp = compute_rdp(q=res.sample_rate, noise_multiplier=1.1, steps=5, orders=orders)
    eps, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=1e-3)
    assert abs(res.epsilon - eps) < 1e-6 * max(1.0, eps)


def test_vmap_engine_per_sample_gradients_match_a_loop_and_its_step_matches_the_dp_sgd_formula() -> None:
    """The workbench's DP engine (one vmap over the whole model) against batches of one."""
    from workbench.runtime.encode import with_note_states
    from workbench.train.dp_vmap import VmapDPOptimizer, per_sample_grads

    torch.manual_seed(0)
    config = tiny_config()
    config.text.freeze = True  # the note reader frozen: its states computed once (vmap cannot trace HF masking)
    model = build_model(config)
    model.train()  # dropout is 0 in the tiny config, so train mode is deterministic
    data = with_note_states(model, random_cases(6))
    batch = data.batch(torch.arange(6))
    g = per_sample_grads(model, batch, 2.0, 0.3)
    worst = 0.0
    for i in range(6):
        one = {k: v[i:i + 1] for k, v in batch.items()}
        model.zero_grad()
        loss_fn(model.forward_batch(one), one, 2.0, 0.3).backward()
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            ref = p.grad if p.grad is not None else torch.zeros_like(p)
            worst = max(worst, float((g[n][i] - ref).abs().max()))
    assert len(g) == sum(1 for p in model.parameters() if p.requires_grad)
    assert worst < 1e-5, worst
    # the privatised gradient: clip each case to C, sum, add N(0, (sigma C)^2), divide by the expected batch
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    dp = VmapDPOptimizer(model, opt, noise_multiplier=0.7, max_grad_norm=0.05, expected_batch_size=4,
                         pos_weight=2.0, generator=torch.Generator().manual_seed(3))
    flat = torch.cat([g[n].reshape(6, -1) for n, p in model.named_parameters() if p.requires_grad], 1)
    clipped = flat * (0.05 / (flat.norm(dim=1, keepdim=True) + 1e-6)).clamp(max=1.0)
    noise = torch.randn(flat.shape[1], generator=torch.Generator().manual_seed(3)) * 0.7 * 0.05
    expected = (clipped.sum(0) + noise) / 4
    assert torch.allclose(dp.noised_gradient(batch), expected, atol=1e-6)


def test_both_engines_train_privately_with_the_same_accounting() -> None:
    from workbench.train.trainer import TrainConfig

    data = random_cases(6)
    eps = {}
    config = tiny_config()
    config.text.freeze = True
    for engine in ("vmap", "opacus"):
        torch.manual_seed(0)
        model = build_model(config)
        privacy = PrivacyConfig(noise_multiplier=1.1, sample_rate=0.5, steps=4, delta=1e-3, engine=engine)
        res = train_private(model, data, privacy, TrainConfig(progress=False))
        assert res.engine == engine
        eps[engine] = (pytest.approx(res.epsilon, rel=1e-9), res.sample_rate, res.steps)
    assert eps["vmap"] == eps["opacus"]


def test_compiled_per_sample_gradients_equal_the_eager_ones() -> None:
    """The GPU nodes compile the vmap engine (torch.compile); compiled and eager must agree."""
    from workbench.runtime.encode import with_note_states
    from workbench.train.dp_vmap import per_sample_grads

    torch.manual_seed(0)
    config = tiny_config()
    config.text.freeze = True
    model = build_model(config).train()
    batch = with_note_states(model, random_cases(6)).batch(torch.arange(6))
    eager = per_sample_grads(model, batch, 2.0, 0.3)
    compiled = torch.compile(per_sample_grads)(model, batch, 2.0, 0.3)
    assert max(float((eager[k] - compiled[k]).abs().max()) for k in eager) < 1e-5


def test_head_only_dp_equals_the_whole_model_vmap_path_step_for_step() -> None:
    """``dp-train = head``: fused vectors computed once, then clipped, noised head steps; the same weights as the
    whole-model vmap engine with the same seed (same draws, same noise), SGD and AdamW alike."""
    from workbench.train.dp_subsets import freeze_for_dp
    from workbench.train.private import _train_private_head, _train_private_vmap, head_only
    from workbench.train.trainer import TrainConfig

    for optimizer in ("sgd", "adamw"):
        torch.manual_seed(1)
        a = build_model(tiny_config())
        b = build_model(tiny_config())
        b.load_state_dict(a.state_dict())
        for m in (a, b):
            freeze_for_dp(m, "head")
        assert head_only(a) and sum(p.numel() for p in a.parameters() if p.requires_grad) == 33
        data = random_cases(6)
        privacy = PrivacyConfig(noise_multiplier=0.7, max_grad_norm=0.5, sample_rate=0.5, steps=5, lr=0.3,
                                optimizer=optimizer)
        cfg = TrainConfig(seed=3, progress=False, aux_weight=0.3)
        ra = _train_private_head(a, data, privacy, cfg, 2.0, dp_generator(3))
        from workbench.runtime.encode import with_ct_states, with_note_states

        rb = _train_private_vmap(b, with_ct_states(b, with_note_states(b, data)), privacy, cfg, 2.0, dp_generator(3))
        assert ra.epsilon == pytest.approx(rb.epsilon) and ra.mean_batch == rb.mean_batch
        start = build_model(tiny_config()).fusion.head.weight
        assert not torch.allclose(a.fusion.head.weight, start)
        torch.testing.assert_close(a.fusion.head.weight, b.fusion.head.weight, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.fusion.head.bias, b.fusion.head.bias, atol=1e-5, rtol=1e-4)
        frozen = {k: v for k, v in b.state_dict().items() if not k.startswith("fusion.head.")}
        for k, v in a.state_dict().items():
            if k in frozen:
                torch.testing.assert_close(v, frozen[k])  # nothing else moved


def test_frozen_modules_train_in_eval_mode_and_optimizer_is_checked() -> None:
    from workbench.train.dp_subsets import freeze_for_dp
    from workbench.train.private import eval_frozen, make_optimizer

    model = build_model(ModelConfig(fusion=FusionConfig(dropout=0.5)))
    freeze_for_dp(model, "head")
    eval_frozen(model)
    assert model.fusion.training and not any(layer.training for layer in model.fusion.layers)
    head = [model.fusion.head.weight]
    assert isinstance(make_optimizer(head, PrivacyConfig(optimizer="sgd")), torch.optim.SGD)
    with pytest.raises(ValueError, match="DP optimizer 'adam'"):
        make_optimizer(head, PrivacyConfig(optimizer="adam"))


@pytest.mark.parametrize("engine", ["vmap", "opacus"])
def test_dp_randomness_is_secret_unless_seeded_for_every_engine(engine: str) -> None:
    """Two releases from the same start on the same data: different with OS entropy, identical when seeded (the
    replayable test mode); the result says which. The Opacus engine's loader and noise obey the same generator."""
    from workbench.train.trainer import TrainConfig

    config = tiny_config()
    config.text.freeze = True
    data = random_cases(6)
    torch.manual_seed(0)
    start = build_model(config).state_dict()

    def release(seed: int | None) -> tuple[torch.Tensor, bool]:
        model = build_model(config)
        model.load_state_dict(start)
        privacy = PrivacyConfig(noise_multiplier=1.0, sample_rate=0.5, steps=3, engine=engine, seed=seed, lr=0.05)
        res = train_private(model, data, privacy, TrainConfig(progress=False, seed=0))
        assert res.engine == engine
        return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad]), res.secure_randomness

    (a, sa), (b, sb) = release(None), release(None)
    assert sa and sb and not torch.equal(a, b)
    (c, sc), (d, sd) = release(11), release(11)
    assert not sc and not sd and torch.equal(c, d)


def test_asking_for_vmap_where_it_cannot_run_is_an_error_not_a_switch() -> None:
    from workbench.train.trainer import TrainConfig

    model = build_model(tiny_config())  # a trainable note encoder: vmap cannot trace its masking
    privacy = PrivacyConfig(noise_multiplier=1.0, sample_rate=0.5, steps=1, engine="vmap")
    with pytest.raises(WorkbenchError, match="engine 'vmap' cannot run here: the note encoder is trainable"):
        train_private(model, random_cases(6), privacy, TrainConfig(progress=False))
    res = train_private(model, random_cases(6), PrivacyConfig(noise_multiplier=1.0, sample_rate=0.5, steps=1),
                        TrainConfig(progress=False))
    assert res.engine == "opacus"  # "auto" says which engine it took


def test_the_class_weight_under_dp_is_the_public_priors() -> None:
    from workbench.train.private import public_pos_weight

    assert public_pos_weight(PrivacyConfig(class_prior=0.25)) == pytest.approx(3.0)
    assert public_pos_weight(PrivacyConfig(class_prior=0.25), class_weights=False) == 1.0
    with pytest.raises(WorkbenchError, match="class prior"):
        public_pos_weight(PrivacyConfig(class_prior=1.0))


def test_head_only_rounds_read_the_fixed_layers_once_until_they_change() -> None:
    from workbench.train.private import fixed_fused, fused_of

    torch.manual_seed(0)
    config = tiny_config()
    config.text.freeze = True
    model = build_model(config)
    data = random_cases(6)
    first = fixed_fused(model, data)
    torch.testing.assert_close(first, fused_of(model, data))
    with torch.no_grad():
        model.fusion.head.weight.add_(1.0)  # the head learns: the fused vectors stay
    assert fixed_fused(model, data) is first
    with torch.no_grad():  # FedAvg's rounding of a fixed layer: the same layer
        next(model.fusion.parameters()).mul_(1 + 2e-7)
    assert fixed_fused(model, data) is first
    with torch.no_grad():  # another model below the head: read again
        next(model.fusion.parameters()).add_(0.1)
    again = fixed_fused(model, data)
    assert again is not first and not torch.equal(again, first)
    torch.testing.assert_close(again, fused_of(model, data))
