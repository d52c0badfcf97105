"""What a hospital node does (federated/task.py), in-process and without a SuperLink: finding its site, the
model every participant starts from, which weights travel, its own data, a local fit, a DP round and its
ledger, and evaluation whose numbers stay at the node."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from federated import task
from federated.config import FedConfig
from federated.ledger import PrivacyLedger
from tests.helpers.cases import random_cases, tiny_config
from workbench.errors import WorkbenchError
from workbench.metrics import auroc
from workbench.models import build_model
from workbench.runtime.encode import EncodedCases
from workbench.runtime.inference import predict_logits


def _sites(cohort: Path) -> list[Path]:
    return sorted(p for p in cohort.iterdir() if (p / "manifest.csv").exists())


def test_a_node_finds_its_site_from_site_dir_or_partition_id(tiny_cohort: Path, tmp_path: Path) -> None:
    fed = FedConfig(cohort=str(tiny_cohort))
    sites = _sites(tiny_cohort)
    assert [task.node_site(fed, {"partition-id": i}) for i in range(3)] == sites
    assert task.node_site(fed, {}) == sites[0]
    assert task.node_site(FedConfig(), {"site-dir": str(sites[2])}) == sites[2]  # a hospital's SuperNode
    with pytest.raises(WorkbenchError, match="node partition 3: the cohort .* has only 3 sites"):
        task.node_site(fed, {"partition-id": 3})
    with pytest.raises(WorkbenchError, match="a node needs its data"):
        task.node_site(FedConfig(), {"partition-id": 0})
    assert task.state_dir(fed, {"state-dir": str(tmp_path)}, sites[1]) == tmp_path / sites[1].name
    assert task.state_dir(FedConfig(state_dir=str(tmp_path / "s")), {}, sites[1]) == tmp_path / "s" / sites[1].name


def test_every_participant_builds_the_same_starting_model_from_the_seed() -> None:
    fed = FedConfig(modalities="ct, notes", seed=3)
    assert task.model_config(fed).modalities == ("ct", "notes")
    assert task.model_config(FedConfig(modalities="notes")).modalities == ("notes",)
    a, b = task.build(fed), task.build(fed)
    assert task.state_digest(task.state_of(a, task.exchanged_names(a, "all"))) == task.state_digest(
        task.state_of(b, task.exchanged_names(b, "all")))
    c = task.build(FedConfig(seed=4))
    assert task.state_digest(a.state_dict()) != task.state_digest(c.state_dict())


def test_what_travels_in_each_federate_mode_and_how_it_loads() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    everything = task.exchanged_names(model, "all")
    assert everything == list(model.state_dict())
    fusion = task.exchanged_names(model, "fusion")
    assert fusion and all(n.startswith("fusion.") for n in fusion)
    assert set(fusion) == {n for n in everything if n.startswith("fusion.")}
    for p in model.ct_encoder.parameters():
        p.requires_grad_(False)
    trainable = task.exchanged_names(model, "trainable")
    assert not any(n.startswith("ct_encoder.") for n in trainable) and set(fusion) <= set(trainable)
    with pytest.raises(WorkbenchError, match="federate mode 'some'"):
        task.exchanged_names(model, "some")
    state = task.state_of(model, fusion)
    assert task.state_bytes(state) == sum(t.numel() * t.element_size() for t in state.values())
    other = build_model(tiny_config())
    task.load_state(other, {k: v + 1.0 for k, v in state.items()})
    assert all(torch.equal(other.state_dict()[k], state[k] + 1.0) for k in fusion)
    assert task.state_digest(task.state_of(other, fusion)) != task.state_digest(state)
    with pytest.raises(WorkbenchError, match="received weights the model does not have"):
        task.load_state(other, {"not.a.weight": torch.zeros(1)})


def test_a_node_takes_its_own_rows_of_a_pooled_encoding(tmp_path: Path) -> None:
    pooled = random_cases(6)
    pooled = EncodedCases(pooled.case_ids, ["site_a", "site_b", "site_a", "site_b", "site_b", "site_a"], pooled.tensors)
    pooled.save(tmp_path / "encoded_train.pt")
    fed = FedConfig(encoded_dir=str(tmp_path))
    model = build_model(tiny_config())
    mine = task.node_data(fed, Path("/cohort/site_b"), model, "train")
    assert mine.case_ids == ["c1", "c3", "c4"] and set(mine.sites) == {"site_b"}
    assert torch.equal(mine.tensors["ct_patch"], pooled.tensors["ct_patch"][[1, 3, 4]])
    assert task.node_data(fed, Path("/cohort/site_b"), model, "train") is mine  # encoded once per process


def test_a_node_reads_with_its_frozen_readers_once_and_again_for_other_reader_weights(tmp_path: Path) -> None:
    pooled = random_cases(4)
    pooled = EncodedCases(pooled.case_ids, ["site_a"] * 4, pooled.tensors)
    pooled.save(tmp_path / "encoded_val.pt")
    fed = FedConfig(encoded_dir=str(tmp_path))
    config = tiny_config()
    config.text.freeze = True
    torch.manual_seed(0)
    model = build_model(config)
    mine = task.node_data(fed, Path("/cohort/site_a"), model, "val")
    assert "note_states" in mine.tensors  # the frozen note reader's states, computed here once
    expected = predict_logits(model, pooled)["logits"]  # the readers run on the tokens: the same logits
    np.testing.assert_allclose(predict_logits(model, mine)["logits"], expected, rtol=1e-5, atol=1e-6)
    assert task.node_data(fed, Path("/cohort/site_a"), model, "val") is mine  # the next round: not again
    kept = list((tmp_path / "node_states").glob("val_*/site_a_*.readers.pt"))
    assert len(kept) == 1  # and kept beside the pooled encoding for the next run's node process
    task._STATES.clear()
    task._DATA.clear()
    reloaded = task.node_data(fed, Path("/cohort/site_a"), model, "val")
    assert torch.equal(reloaded.tensors["note_states"], mine.tensors["note_states"])
    np.testing.assert_allclose(predict_logits(model, reloaded)["logits"], expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # FedAvg's mean of identical weights: an ulp off, the same reader
        frozen = next(p for p in model.text_encoder.parameters() if not p.requires_grad)
        frozen.mul_(1 + 2e-7)
    assert task.node_data(fed, Path("/cohort/site_a"), model, "val") is reloaded
    with torch.no_grad():  # other reader weights (another run's model): other states
        next(p for p in model.text_encoder.parameters() if not p.requires_grad).add_(0.5)
    again = task.node_data(fed, Path("/cohort/site_a"), model, "val")
    assert again is not mine and not torch.equal(again.tensors["note_states"], mine.tensors["note_states"])
    assert len(list((tmp_path / "node_states").glob("val_*/site_a_*.readers.pt"))) == 2


def test_a_local_fit_moves_the_weights_and_evaluate_matches_its_own_numbers() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    data = random_cases(6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = task.train_plain(model, data, FedConfig(local_epochs=2, batch_size=3, lr=1e-2), server_round=1)
    assert np.isfinite(out["train_loss"]) and out["samples_per_s"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    res = task.evaluate(model, data)
    logits = predict_logits(model, data)["logits"]
    y = data.labels
    assert res["loss"] == pytest.approx(float(np.mean(np.logaddexp(0.0, logits) - y * logits)), rel=1e-6)
    assert res["auroc"] == pytest.approx(auroc(y, logits))
    empty = task.evaluate(model, data.subset([]))
    assert np.isnan(empty["auroc"]) and np.isnan(empty["loss"])


def test_a_dp_round_is_in_the_ledger_before_it_is_sent(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = tiny_config()
    config.text.freeze = True
    model = build_model(config)
    fed = FedConfig(dp=True, dp_epsilon=2.0, dp_budget=8.0, dp_sample_rate=0.5, dp_epochs=2.0, num_server_rounds=2)
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", "site_a", fed.dp_budget, fed.dp_delta)
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("fusion.head.")}
    out = task.train_dp(model, random_cases(6), fed, ledger, "run1", server_round=1)
    assert out["steps"] == fed.dp_steps == 4 and out["secure_randomness"] == 1.0
    assert out["dp_trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert any(not torch.equal(head[k], model.state_dict()[k]) for k in head)
    assert 0 < out["epsilon_run"] <= 2.0 and out["epsilon_total"] == pytest.approx(out["epsilon_run"])
    saved = PrivacyLedger.open(tmp_path / "ledger.json", "site_a", fed.dp_budget, fed.dp_delta)
    assert [e.kind for e in saved.entries] == ["count", "dp-sgd"] and saved.epsilon("run1") == pytest.approx(
        out["epsilon_run"])
    assert task.dp_seed(fed, "site_a", 1) is None  # secret randomness unless the test mode is asked for
    seeded = FedConfig(dp=True, dp_seeded=True, seed=2)
    assert task.dp_seed(seeded, "site_a", 1) == task.dp_seed(seeded, "site_a", 1) != task.dp_seed(seeded, "site_b", 1)


def test_the_nodes_own_metrics_stay_in_its_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "site_a"
    task.log_local_metrics(state, {"round": 1, "auroc": np.float64(0.75), "split": "val"})
    task.log_local_metrics(state, {"round": 2, "auroc": 0.8, "split": "val"})
    rows = [json.loads(x) for x in (state / "local_metrics.jsonl").read_text().splitlines()]
    assert rows == [{"round": 1, "auroc": 0.75, "split": "val"}, {"round": 2, "auroc": 0.8, "split": "val"}]
    assert task.allowed_splits(FedConfig(eval_splits="val"), {}) == ["val"]
    assert task.allowed_splits(FedConfig(eval_splits="val"), {"eval-splits": "val,test"}) == ["val", "test"]
