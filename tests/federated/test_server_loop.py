"""The server's after-round hook (Flower's ``evaluate_fn``): checkpoint, round log and plot, final average."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvg
from safetensors.torch import load_file

from federated.config import FedConfig
from federated.server_app import AfterRound, RecordingStrategy
from workbench.runtime.rounds import read_rounds, rounds_png


def _arrays(v: float) -> ArrayRecord:
    return ArrayRecord({"w": torch.full((2,), v), "n": torch.tensor([3])})


def test_after_round_writes_the_round_and_averages_the_last_k(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fed = FedConfig(final_average=2, num_server_rounds=3, dp=True, out_dir=str(run), progress=False)
    recorder = RecordingStrategy(FedAvg(), dp=True)
    hook = AfterRound(recorder, fed, run)
    assert hook(0, _arrays(0.0)) is None and not run.exists()  # Flower's call before the first round
    for r, v in ((1, 1.0), (2, None), (3, 3.0)):  # round 2: every node refused, nothing aggregated
        recorder.rounds.append({"round": r, "trained": 0 if v is None else 1, "refused": 0,
                                "nodes": [{"site": "hospital_a", "epsilon_total": 0.1 * r, "secure_randomness": 1.0}],
                                "evaluate": {"hospital_a": {"kept-local": 1.0}}})
        recorder.last_aggregate = None if v is None else _arrays(v)
        hook(r, recorder.last_aggregate or _arrays(1.0))
        saved = load_file(run / "checkpoint" / "global.safetensors")
        assert saved["w"][0].item() == (1.0 if v is None else v)  # a round without an aggregate saves nothing new
    final = hook.final_arrays(_arrays(3.0)).to_torch_state_dict()
    assert final["w"].tolist() == pytest.approx([2.0, 2.0])  # rounds 1 and 3: the last two aggregates
    assert final["n"].tolist() == [3]
    record = json.loads((run / "rounds.json").read_text())
    assert record["config"]["out-dir"] == "." and str(tmp_path) not in json.dumps(record)
    assert [r["round"] for r in read_rounds(run)] == [1, 2, 3]
    png = (run / "rounds.png").read_bytes()
    assert png.startswith(b"\x89PNG") and png == rounds_png(read_rounds(run))  # the monitor draws the same plot
