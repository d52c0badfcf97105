"""The federated configuration: pyproject's [tool.flwr.app.config] parses into FedConfig; bad keys refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from federated.config import FedConfig
from federated.server_app import make_strategy
from workbench.errors import WorkbenchError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_every_app_config_key_is_a_fedconfig_field_and_parses() -> None:
    app = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]
    assert app["components"] == {"serverapp": "federated.server_app:app", "clientapp": "federated.client_app:app"}
    cfg = FedConfig.from_run_config(app["config"])
    assert cfg == FedConfig(progress=False)  # the file documents the defaults, nothing else
    assert set(app["config"]) == set(FedConfig().to_run_config())


def test_bad_values_are_refused_with_one_line() -> None:
    with pytest.raises(WorkbenchError, match="unknown key 'rounds'"):
        FedConfig.from_run_config({"rounds": 3})
    with pytest.raises(WorkbenchError, match="strategy 'fedsgd'"):
        FedConfig.from_run_config({"strategy": "fedsgd"})
    with pytest.raises(WorkbenchError, match="dp-epsilon = 'lots'"):
        FedConfig.from_run_config({"dp-epsilon": "lots"})


@pytest.mark.parametrize("name, cls", [("fedavg", "FedAvg"), ("fedprox", "FedProx"), ("fedadam", "FedAdam"),
                                       ("fedtrimmedavg", "FedTrimmedAvg"), ("krum", "Krum"),
                                       ("normbounded", "NormBoundedFedAvg")])
def test_each_strategy_is_flowers_own(name: str, cls: str) -> None:
    assert type(make_strategy(FedConfig(strategy=name), 4)).__name__ == cls
    wrapped = make_strategy(FedConfig(strategy=name, central_dp=True), 4)
    assert type(wrapped).__name__ == "DifferentialPrivacyServerSideFixedClipping"


def test_a_node_evaluates_only_the_splits_it_allows() -> None:
    from federated import task

    fed = FedConfig.from_run_config({})
    assert task.allowed_splits(fed, {}) == ["val"]  # never test unless someone says so
    assert task.allowed_splits(fed, {"eval-splits": "val,test"}) == ["val", "test"]  # the hospital's own choice
    with pytest.raises(WorkbenchError, match="eval-splits"):
        FedConfig.from_run_config({"eval-splits": "val,everything"})
    assert FedConfig.from_run_config({"dp-seeded": "true"}).dp_secure is False
    assert FedConfig().dp_secure  # secret randomness unless asked otherwise
    with pytest.raises(WorkbenchError, match="dp-engine"):
        FedConfig.from_run_config({"dp-engine": "fast"})


def test_the_defaults_are_the_measured_dp_recipe() -> None:
    """The demo and ``workbench bench federated`` read the recipe from FedConfig's defaults, not a copy of it."""
    fed = FedConfig()
    assert (fed.dp_train, fed.dp_optimizer, fed.dp_sample_rate, fed.dp_lr, fed.dp_steps) == ("head", "sgd", 0.5, 0.5, 32)
    assert (fed.batch_size, fed.local_epochs, fed.dp_count_noise, fed.dp_class_prior) == (8, 1, 20.0, 0.25)


def test_a_saved_run_record_names_no_absolute_machine_path(tmp_path: Path) -> None:
    run = tmp_path / "out" / "run"
    fed = FedConfig(cohort="/data/hospitals/cohort", init_model=str(tmp_path / "out" / "fusion_init"),
                    state_dir=str(tmp_path / "out" / "nodes"), out_dir=str(run), text_encoder="")
    record = fed.to_record(run)
    assert record["out-dir"] == "." and record["state-dir"] == "../nodes" and record["init-model"] == "../fusion_init"
    assert "cohort" not in record and record["text-encoder"] == ""  # outside the RUN's folder: left out; unset: kept
    assert str(tmp_path) not in str(record) and record["dp-class-prior"] == fed.dp_class_prior


def test_a_trimmed_mean_that_would_trim_no_node_is_refused_by_name() -> None:
    make_strategy(FedConfig(strategy="fedtrimmedavg", trim_beta=0.25), 4)  # one node trimmed at each end
    with pytest.raises(WorkbenchError, match="trims no node of 3"):
        make_strategy(FedConfig(strategy="fedtrimmedavg", trim_beta=0.25), 3)
