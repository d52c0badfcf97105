"""A node asked for the vmap DP engine where it cannot run fails with the reason, never falls back to Opacus."""

from __future__ import annotations

from pathlib import Path

import pytest

from federated import task
from federated.config import FedConfig
from federated.ledger import PrivacyLedger
from tests.helpers.cases import random_cases, tiny_config
from workbench.errors import WorkbenchError
from workbench.models import build_model


def _round(engine: str, tmp_path: Path) -> PrivacyLedger:
    """One DP round of every trainable parameter, the note encoder included (its masking defeats vmap)."""
    fed = FedConfig(dp=True, dp_epsilon=1.0, dp_budget=8.0, num_server_rounds=1, dp_sample_rate=0.5,
                    dp_epochs=1.0, dp_train="all", dp_optimizer="sgd", dp_lr=0.05, dp_engine=engine, dp_seeded=True)
    ledger = PrivacyLedger.open(tmp_path / f"{engine}.json", "hospital_a", fed.dp_budget, fed.dp_delta)
    task.train_dp(build_model(tiny_config()), random_cases(6), fed, ledger, "study", 1)
    return ledger


def test_a_requested_vmap_engine_that_cannot_run_is_an_error_at_the_node(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="engine 'vmap' cannot run here: the note encoder is trainable"):
        _round("vmap", tmp_path)
    assert [e.kind for e in PrivacyLedger.open(tmp_path / "vmap.json", "hospital_a", 8.0, 1e-5).entries
            if e.kind == "dp-sgd"] == []  # nothing trained, nothing recorded as trained


def test_auto_takes_opacus_there_and_the_ledger_says_so(tmp_path: Path) -> None:
    ledger = _round("auto", tmp_path)
    assert [e.engine for e in ledger.entries if e.kind == "dp-sgd"] == ["opacus"]
