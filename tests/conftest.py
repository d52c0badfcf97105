"""Session-wide fixtures: one tiny cohort generated per test session and shared (docs/architecture.md §10); the integration mark.

Helpers that test modules share live in ``tests/helpers/``, not here and not in other test modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.cohort.config import CohortConfig

TESTS = Path(__file__).resolve().parent
# Tests that start a Flower simulation (or `flwr run`), JupyterLab, a notebook kernel or a browser: minutes each.
# Marked ``integration`` here by path, so `make test-fast` (pytest -m "not integration") skips them.
INTEGRATION = ("notebooks", "federated/test_simulation.py", "federated/test_what_leaves.py", "service")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = item.path.resolve().relative_to(TESTS).as_posix() if item.path.resolve().is_relative_to(TESTS) else ""
        if any(rel == p or rel.startswith(p + "/") for p in INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset (3 sites x 8 patients), generated once; tests must not modify it (copy first)."""
    from workbench.cohort.generate import generate_cohort

    out = tmp_path_factory.mktemp("cohort") / "tiny"
    generate_cohort(out, CohortConfig(preset="tiny", seed=7, workers=2), progress=False)
    return out


@pytest.fixture
def tiny_site_copy(tiny_cohort: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny cohort's first site, free to corrupt."""
    site = sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())[0]
    dst = tmp_path / site.name
    shutil.copytree(site, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_calibrated_run(tiny_run: Path, tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``tiny_run`` calibrated on the tiny cohort (``workbench calibrate``: per-site sets, intervals,
    refer flags, similar-case indexes), shared by the session; tests must not modify it."""
    from workbench.runtime.run_uncertainty import calibrate_run

    run = tmp_path_factory.mktemp("runs") / "tiny_calibrated_run"
    shutil.copytree(tiny_run, run)
    calibrate_run(run, tiny_cohort, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_run(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fused model trained for 2 epochs on the tiny cohort (a RUN folder), shared by the session."""
    from workbench.train.run import train_run
    from workbench.train.trainer import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "tiny_run"
    cache = tmp_path_factory.mktemp("cache")
    train_run([tiny_cohort], out, train_config=TrainConfig(epochs=2, progress=False), cache_dir=cache, progress=False)
    return out
