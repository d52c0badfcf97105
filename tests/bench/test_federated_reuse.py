"""``bench federated`` takes a run trained elsewhere only when it is the same training (workbench.bench.federated_reuse).

The claim that licenses reusing the head-only variants across auxiliary weights is checked on real training: a
seeded DP-SGD run of the fused head alone ends on the same weights under 0.3 and 1.0 (the auxiliary loss reads
frozen heads), while plain training of every parameter does not (the knob is live). The folder rules are checked
on planted folders: the plan without ``aux_weight`` is found by its digest, another plan's folder is not, and the
sweep's FedAvg run is taken only for the recipe the plan states.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from federated.config import FedConfig
from tests.helpers.cases import random_cases, tiny_config
from workbench.bench.federated_bench import _digest
from workbench.bench.federated_reuse import HEAD_ONLY, reuse
from workbench.models import build_model
from workbench.train.dp_subsets import freeze_for_dp
from workbench.train.private import PrivacyConfig, train_private
from workbench.train.trainer import TrainConfig, train_model


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = tiny_config()
    config.text.freeze = True
    return build_model(config)


def _trained(aux_weight: float, dp: bool) -> dict[str, torch.Tensor]:
    model = _model()
    data = random_cases(6)
    if dp:
        freeze_for_dp(model, "head")
        privacy = PrivacyConfig(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, steps=4, delta=1e-5,
                                lr=0.5, optimizer="sgd", seed=11)
        train_private(model, data, privacy, TrainConfig(seed=3, progress=False, aux_weight=aux_weight))
    else:
        train_model(model, data, None, TrainConfig(epochs=2, batch_size=4, lr=1e-2, patience=0, seed=3,
                                                   progress=False, aux_weight=aux_weight))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_auxiliary_weight_cannot_change_a_head_only_dp_run_but_changes_plain_training() -> None:
    a, b = _trained(0.3, dp=True), _trained(1.0, dp=True)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    start = _model().state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a if k.startswith("fusion.head."))  # it did train
    p, q = _trained(0.3, dp=False), _trained(1.0, dp=False)
    assert any(not torch.equal(p[k], q[k]) for k in p)


def _done(seed_dir: Path, name: str, marker: str) -> None:
    (seed_dir / name / "run").mkdir(parents=True, exist_ok=True)
    (seed_dir / name / "run" / "marker").write_text(marker)
    (seed_dir / f"{name}.json").write_text(json.dumps({"seconds": 1.0}))
    (seed_dir / f"{name}.eval-cohortx.json").write_text(json.dumps({"case_ids": [], "logits": []}))


def _setup(root: Path, aux_weight: float) -> SimpleNamespace:
    plan = {"rounds": 10, "aux_weight": aux_weight}
    return SimpleNamespace(plan=plan, work=root / f"federated-full-seed0-{_digest(plan, 8)}",
                           cohorts=SimpleNamespace(tag="full-seed0"), base=FedConfig(aux_weight=aux_weight))


def test_reuse_takes_only_the_same_training(tmp_path: Path) -> None:
    setup = _setup(tmp_path, 1.0)
    older = tmp_path / f"federated-full-seed0-{_digest({'rounds': 10}, 8)}"  # this plan without aux_weight
    other = tmp_path / f"federated-full-seed0-{_digest({'rounds': 12}, 8)}"  # another plan: never taken
    for name in (*HEAD_ONLY, "fedavg", "centralized"):
        _done(older / "seed0", name, "older")
        _done(other / "seed1", name, "other")
    sweep = tmp_path / f"federated-full-seed0-{_digest({'rounds': 10}, 8)}-fedavg-recipes"
    _done(sweep / "aux_weight_1" / "seed0", "fedavg", "aux 1")
    _done(sweep / "aux_weight_0.3" / "seed0", "fedavg", "aux 0.3")

    taken = reuse(setup, 0)
    assert sorted(taken) == sorted([*HEAD_ONLY, "fedavg"])
    sd = setup.work / "seed0"
    assert (sd / "fedavg" / "run" / "marker").read_text() == "aux 1"  # the plan's recipe, not the other
    assert json.loads((sd / "fedavg.json").read_text())["reused_from"].endswith("aux_weight_1/seed0")
    assert (sd / "dp_eps1" / "run" / "marker").read_text() == "older"
    assert (sd / "dp_eps1.eval-cohortx.json").exists()
    assert not (sd / "centralized.json").exists()  # trains every parameter: the auxiliary weight matters
    assert reuse(setup, 0) == []  # what is there is kept
    assert reuse(setup, 1) == []  # seed 1 exists only under another plan
