"""Flower for real, small: a 3-node DP federation through run_simulation, and ``flwr run .`` from a fresh checkout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from federated import audit
from federated.config import FedConfig
from federated.ledger import PrivacyLedger
from tests.helpers.cohort import truth_phi
from tests.helpers.privacy import independent_epsilon
from workbench.models.model import load_model
from workbench.runtime.run import site_dirs_of

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_three_nodes_two_rounds_dp_refusal_ledger_restart_and_accounting(tiny_cohort: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from federated.federate import run_federated

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    sites = site_dirs_of(tiny_cohort)
    assert len(sites) == 3
    state = tmp_path / "nodes"
    spent = sites[2].name  # this hospital spent its budget in an earlier study
    PrivacyLedger.open(state / spent / "privacy_ledger.json", spent, 3.0, 1e-5).record("earlier", 1, 0.6, 0.5, 100, 1.0)
    from workbench.models.model import ModelConfig, build_model
    from workbench.train.pretrain_text import save_note_reader

    reader = tmp_path / "reader"  # a frozen note reader (untrained here): DP trains the rest, the vmap engine
    save_note_reader(build_model(ModelConfig(modalities=("notes",))), reader, "test reader, not pretrained")
    fed = FedConfig(cohort=str(tiny_cohort), num_server_rounds=2, dp=True, dp_epsilon=1.0, dp_budget=3.0,
                    dp_sample_rate=0.25, dp_epochs=1.0, dp_train="all", dp_optimizer="adamw", dp_lr=2e-3,
                    state_dir=str(state), progress=False, run_tag="study1", text_encoder=str(reader))
    summary = run_federated(fed, tmp_path / "run1")
    # said before training: the two nodes with budget are far too small for epsilon 1; the spent one is left out
    assert sorted(summary["dp_signal"]) == [s.name for s in sites[:2]]
    assert all(not c["learnable"] and c["snr"] < 1 for c in summary["dp_signal"].values())

    rounds = json.loads((tmp_path / "run1" / "rounds.json").read_text())["rounds"]
    assert [r["trained"] for r in rounds] == [2, 2] and [r["refused"] for r in rounds] == [1, 1]
    refusal = summary["refused"][spent]
    assert spent in refusal and "budget" in refusal and "Refusing" in refusal
    model = load_model(tmp_path / "run1" / "model")  # the server carried on and saved a model folder
    assert model.modalities == ("ct", "notes")
    assert (tmp_path / "run1" / "rounds.png").stat().st_size > 1000
    for record in ("rounds.json", "federation.json"):  # no absolute machine path: relative to the RUN or left out
        text = (tmp_path / "run1" / record).read_text()
        assert str(tmp_path) not in text and str(tiny_cohort) not in text
        assert json.loads(text)["config"]["state-dir"] == "../nodes"
    for s in sites[:2]:
        eps = summary["epsilon"][s.name]
        assert 0.5 < eps["run"] <= 1.0 + 1e-9  # never above the run target
        led = PrivacyLedger.open(state / s.name / "privacy_ledger.json", s.name, 3.0, 1e-5)
        assert [e.kind for e in led.entries] == ["count", "dp-sgd", "dp-sgd"]  # the case count once, then rounds
        assert led.secure()  # OS entropy
        assert eps["lifetime"] == pytest.approx(independent_epsilon(led.releases(), 1e-5), rel=0.01)
        reported = [n["epsilon_total"] for r in rounds for n in r["nodes"] if n["site"] == s.name]
        assert reported[-1] == pytest.approx(eps["lifetime"], rel=1e-9)
        assert audit.verify(state / s.name / "audit.jsonl") == 2

    # a restart: a second study reads the same ledgers and keeps accumulating; it trains the fused head alone
    # with SGD and keeps the mean of its two rounds
    fed2 = FedConfig(**{**fed.__dict__, "num_server_rounds": 2, "run_tag": "study2", "dp_train": "head",
                        "dp_optimizer": "sgd", "dp_lr": 0.5, "final_average": 2})
    summary2 = run_federated(fed2, tmp_path / "run2", calibrate=False)
    for s in sites[:2]:
        led = PrivacyLedger.open(state / s.name / "privacy_ledger.json", s.name, 3.0, 1e-5)
        assert [e.run_id for e in led.entries] == ["study1"] * 3 + ["study2"] * 3
        assert summary["epsilon"][s.name]["lifetime"] < summary2["epsilon"][s.name]["lifetime"] <= 3.0
    rounds2 = json.loads((tmp_path / "run2" / "rounds.json").read_text())["rounds"]
    assert {n["dp_trainable_params"] for r in rounds2 for n in r["nodes"] if "dp_trainable_params" in n} == {65.0}
    from federated import task

    start, trained = task.build(fed2).state_dict(), load_model(tmp_path / "run2" / "model").state_dict()
    moved = {k for k in start if start[k].is_floating_point()
             and not torch.allclose(start[k], trained[k], atol=1e-6, rtol=1e-5)}  # FedAvg's own rounding aside
    assert moved == {"fusion.head.weight", "fusion.head.bias"}  # DP touched the head and nothing else

    # nothing that left a node, and nothing the server wrote, carries a patient identifier
    phi = truth_phi(tiny_cohort)
    texts = [p.read_text(errors="ignore") for p in [*(tmp_path / "run1").glob("*.json"), *state.rglob("*.json*")]]
    assert phi and not any(s in t for s in phi for t in texts)


@pytest.mark.slow
def test_flwr_run_from_a_fresh_checkout(tiny_cohort: Path, tmp_path: Path) -> None:
    """``flwr run .`` with a temporary FLWR_HOME; the local SuperLink it starts is stopped by its process id.
    FedProx (the proximal term in the nodes' trainer) inside Flower's server-side DP clipping wrapper."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs the git checkout")
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(REPO), str(checkout)], check=True)
    shutil.copy(REPO / "pyproject.toml", checkout / "pyproject.toml")  # the working tree's app config
    for d in ("federated",):
        shutil.rmtree(checkout / d)
        shutil.copytree(REPO / d, checkout / d, ignore=shutil.ignore_patterns("__pycache__"))
    bindir = Path(sys.executable).parent
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr_home"), "PATH": f"{bindir}:{os.environ['PATH']}",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "WORKBENCH_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    run_config = (f"cohort='{tiny_cohort}' num-server-rounds=2 out-dir='{out}' "
                  f"state-dir='{tmp_path / 'nodes'}' strategy='fedprox' central-dp=true")
    try:
        proc = subprocess.run([str(bindir / "flwr"), "run", ".", "--stream", "--federation-config",
                               "num-supernodes=3", "--run-config", run_config], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        for _ in range(60):  # --stream returns as the run ends; the model folder is its last write
            if (out / "model").is_dir():
                break
            time.sleep(1)
        rounds = json.loads((out / "rounds.json").read_text())["rounds"]
        assert [r["trained"] for r in rounds] == [3, 3]
        assert sorted(rounds[-1]["evaluate"]) == [s.name for s in site_dirs_of(tiny_cohort)]
        privacy = json.loads((out / "rounds.json").read_text())["privacy"]
        assert privacy["private"] is False and "auroc" in privacy["left_each_node"]  # said plainly
        assert load_model(out / "model").modalities == ("ct", "notes")
    finally:
        # the SuperLink's command line names its log file under this test's FLWR_HOME: that process, no other
        pids = subprocess.run(["pgrep", "-f", f"flower-superlink.*{tmp_path / 'flwr_home'}"], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.killpg(int(pid), signal.SIGTERM)  # it leads its own session: its SuperNodes go with it
            except (ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGTERM)
