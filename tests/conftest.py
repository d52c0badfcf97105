"""Session-wide fixtures: one tiny cohort generated per test session and shared (DESIGN §10)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.cohort.config import CohortConfig


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


def truth_phi(cohort: Path) -> set[str]:
    """Every PHI string the generator planted in a cohort (5 characters or more): what outputs are scanned for."""
    import json

    out: set[str] = set()
    for line in (cohort / "truth.jsonl").read_text().splitlines():
        out.update(s for s in json.loads(line).get("phi", []) if len(s) >= 5)
    return out


def has_tool(name: str) -> bool:
    return shutil.which(name) is not None


@pytest.fixture(scope="session")
def tiny_run(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fused model trained for 2 epochs on the tiny cohort (a RUN folder), shared by the session."""
    from workbench.train.run import train_run
    from workbench.train.trainer import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "tiny_run"
    cache = tmp_path_factory.mktemp("cache")
    train_run([tiny_cohort], out, train_config=TrainConfig(epochs=2, progress=False), cache_dir=cache, progress=False)
    return out
