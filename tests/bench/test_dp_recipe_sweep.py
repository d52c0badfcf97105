"""The DP recipe sweep's simulation is the nodes' DP-SGD of the head: without noise or clipping, at rate 1, one node
and one round, it is plain gradient descent on the class-weighted logistic loss, worked out here by hand."""

from __future__ import annotations

import torch

from workbench.bench.dp_recipe_sweep import Setting, choice, simulate


def test_without_noise_or_clipping_it_is_gradient_descent() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    y = (x[:, 0] > 0).float()
    s = Setting(dp_lr=0.3, dp_epochs=5.0, dp_sample_rate=1.0, rounds=1, final_average=1, max_grad_norm=1e9,
                count_noise=0.0, class_prior=0.25)
    head = simulate(s, 0.0, [(x, y)], torch.zeros(4), torch.Generator().manual_seed(1))
    w, xb = torch.zeros(4), torch.cat([x, torch.ones(40, 1)], 1)
    weight = torch.where(y > 0.5, torch.tensor(3.0), torch.tensor(1.0))  # (1 - 0.25) / 0.25
    for _ in range(5):
        w = w - 0.3 * ((torch.sigmoid(xb @ w) - y) * weight) @ xb / 40
    assert torch.allclose(head, w, atol=1e-5)
    assert (xb @ head)[y > 0.5].mean() > (xb @ head)[y < 0.5].mean()  # it learned the sign


def test_the_default_is_kept_unless_a_setting_beats_it_on_val_beyond_its_interval() -> None:
    def rec(lr: float, value: float, diff: tuple[float, float], default: bool = False) -> dict:
        return {"feasible": True, "dp_lr": lr, "dp_epochs": 16.0, "dp_sample_rate": 0.5, "val_auroc": value,
                "val_auroc_ci95": [value - 0.05, value + 0.05], "is_default": default,
                "val_auroc_minus_default": {"value": value - 0.80, "ci95": list(diff)}}

    infeasible = {"feasible": False, "val_auroc": None, "is_default": False}
    assert choice([rec(0.5, 0.80, (0, 0), True), rec(0.1, 0.82, (-0.01, 0.05)), infeasible])["default_kept"]
    out = choice([rec(0.5, 0.80, (0, 0), True), rec(0.1, 0.85, (0.01, 0.09))])
    assert not out["default_kept"] and out["best"]["dp_lr"] == 0.1
