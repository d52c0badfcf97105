"""The federated benchmark's pooled variants trained from a packed folder (the GPU route) are the benchmark's own
recipe: the same weights as ``train_pooled`` in-process, only the fused head moving in ``centralized_head``, and
put back where ``bench federated`` looks for them without overwriting a variant that is already there."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.helpers.cases import random_cases, tiny_config
from workbench.bench.federated_central import import_trained, train, train_pooled
from workbench.models import build_model
from workbench.models.model import load_model, save_model


def test_packed_training_is_the_benchmark_recipe_and_goes_back_into_place(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = tiny_config()
    config.text.freeze = True
    save_model(build_model(config), tmp_path / "pack" / "init")
    data = random_cases(6)
    data.save(tmp_path / "pack" / "encoded_train.pt")
    work = tmp_path / "work"
    (tmp_path / "pack" / "central.json").write_text(json.dumps(
        {"truth": "brock", "work": str(work), "init": "init", "epochs": 2, "batch_size": 3, "lr": 1e-2,
         "dp_train": "head"}))
    train(tmp_path / "pack", [3], "cpu", tmp_path / "out")
    here = train_pooled(tmp_path / "pack" / "init", data, tmp_path / "here", seed=3, epochs=2, batch_size=3, lr=1e-2,
                        head_only=False, dp_train="head")
    assert here["train_device"] == "cpu" and not (tmp_path / "here" / ".checkpoint").exists()
    there = load_model(tmp_path / "out" / "seed3" / "centralized" / "model").state_dict()
    for k, v in load_model(tmp_path / "here" / "model").state_dict().items():
        assert torch.equal(v, there[k]), k  # one recipe, one seed: the same weights
    init = load_model(tmp_path / "pack" / "init").state_dict()
    head = load_model(tmp_path / "out" / "seed3" / "centralized_head" / "model").state_dict()
    moved = {k for k, v in head.items() if not torch.equal(v, init[k])}
    assert moved and all(k.startswith("fusion.head.") for k in moved)

    (work / "seed3").mkdir(parents=True)
    (work / "seed3" / "centralized_head.json").write_text("{}")  # already trained there: kept
    assert import_trained(tmp_path / "out", work) == ["seed3/centralized"]
    assert (work / "seed3" / "centralized" / "model" / "config.json").is_file()
    assert json.loads((work / "seed3" / "centralized.json").read_text())["train_device"] == "cpu"
    assert json.loads((work / "seed3" / "centralized_head.json").read_text()) == {}
