"""The replay attack on a node's DP release: it wins every time against seeded randomness, and no more often
than epsilon allows against the node's secret randomness.

The attacker knows the federated config (the seed in ``pyproject.toml`` included), the starting weights and every
record of the node but one (the target). It replays the node's round for both neighbouring datasets (with and
without the target) exactly as the node's code would with the config's seed, and names the dataset whose replay
lies nearer the released weights. Under (epsilon, delta)-DP no test tells the two datasets apart with accuracy
above e^eps / (1 + e^eps) + delta (0.73 at epsilon 1), whatever it does. The release goes through the node's
real round (``federated.task.train_dp``: count release, noise planned by the ledger, head-only DP-SGD).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from federated import task
from federated.config import FedConfig
from federated.ledger import PrivacyLedger
from tests.helpers.cases import random_cases, tiny_config
from workbench.models import build_model

EPSILON = 1.0
TRIALS = 30


def _fed(seeded: bool) -> FedConfig:
    return FedConfig(dp=True, dp_epsilon=EPSILON, dp_budget=EPSILON, num_server_rounds=1, dp_sample_rate=0.5,
                     dp_epochs=2.0, dp_lr=0.5, dp_train="head", dp_optimizer="sgd", dp_seeded=seeded, seed=0)


def _round(start: dict[str, torch.Tensor], data, fed: FedConfig, ledger_path: Path) -> torch.Tensor:
    """One node round from ``start`` on ``data``; the released head weights (what the server receives)."""
    model = build_model(tiny_config())
    model.load_state_dict(start)
    ledger = PrivacyLedger.open(ledger_path, "hospital_a", fed.dp_budget, fed.dp_delta)
    task.train_dp(model, data, fed, ledger, "study", 1)
    assert ledger.epsilon() <= EPSILON + 1e-9
    return torch.cat([model.fusion.head.weight.detach().flatten(), model.fusion.head.bias.detach()])


def _attack(node_seeded: bool, tmp_path: Path) -> tuple[int, list[float]]:
    torch.manual_seed(0)
    start = build_model(tiny_config()).state_dict()
    full = random_cases(6)  # the target is the last case (malignant)
    neighbours = {1: full, 0: full.subset(list(range(5)))}
    coins = torch.randint(0, 2, (TRIALS,), generator=torch.Generator().manual_seed(1)).tolist()
    correct, distances = 0, []
    for t, b in enumerate(coins):
        released = _round(start, neighbours[b], _fed(node_seeded), tmp_path / f"node{t}.json")
        # the attacker replays both worlds as the node's code would with the config's seed
        replay = {w: _round(start, neighbours[w], _fed(True), tmp_path / f"attacker{t}_{w}.json") for w in (0, 1)}
        dist = {w: float((released - replay[w]).norm()) for w in (0, 1)}
        distances.append(min(dist.values()))
        correct += int(min(dist, key=dist.get) == b)
    return correct, distances


def test_replay_names_the_dataset_every_time_against_seeded_randomness(tmp_path: Path) -> None:
    correct, distances = _attack(node_seeded=True, tmp_path=tmp_path)
    assert correct == TRIALS and max(distances) == 0.0  # the release is reproduced exactly: no privacy at all


def test_replay_does_no_better_than_epsilon_allows_against_secret_randomness(tmp_path: Path) -> None:
    correct, distances = _attack(node_seeded=False, tmp_path=tmp_path)
    assert min(distances) > 0.0  # the attacker never reproduces the release
    bound = math.exp(EPSILON) / (1 + math.exp(EPSILON)) + 1e-5  # 0.731
    print(f"attacker named the right dataset {correct}/{TRIALS} times (DP bound {bound:.3f})")
    # generous margin: at the bound's 0.731, 26 or more of 30 has probability 0.06; at the ~0.5 a replay of the
    # wrong noise gets, about 3e-5
    assert correct <= 25


def test_two_secure_releases_of_one_config_on_the_same_data_differ(tmp_path: Path) -> None:
    torch.manual_seed(0)
    start = build_model(tiny_config()).state_dict()
    data = random_cases(6)
    a = _round(start, data, _fed(False), tmp_path / "a.json")
    b = _round(start, data, _fed(False), tmp_path / "b.json")
    assert not torch.equal(a, b)
    led = PrivacyLedger.open(tmp_path / "a.json", "hospital_a", EPSILON, 1e-5)
    assert led.secure() and [e.kind for e in led.entries] == ["count", "dp-sgd"]
