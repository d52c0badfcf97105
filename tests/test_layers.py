"""The layer rules of docs/architecture.md §1 hold, and the check that says so can fail.

``lint-imports`` reads the contracts in pyproject.toml. Run on this tree it must pass; run on a scratch copy of
the packages with one deliberate upward import (data importing train) it must fail and name that import, so a
green run means the contracts were read and applied, not skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH=cwd: the packages lint-imports analyses are the ones in cwd (grimp imports nothing, it reads files)
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_tree_keeps_every_import_contract() -> None:
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " 0 broken" in r.stdout
    for contract in ("workbench layers", "never the cohort generator", "only cli, demo, bench and federated use the "
                     "training layer", "only cli, demo, bench and the node service import federated",
                     "benchmarks are run by the CLI only"):
        assert contract in r.stdout


def _lint_with(tmp_path: Path, module: str, source: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on a scratch copy of both packages with one more module, ``module`` (a path inside it)."""
    for pkg in ("workbench", "federated"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / module).write_text(source)
    return _lint(tmp_path)


def test_an_upward_import_breaks_the_layers_contract(tmp_path: Path) -> None:
    r = _lint_with(tmp_path, "workbench/data/upward.py",
                   '"""A deliberate violation: data may not import train."""\n\nfrom workbench.train.trainer import TrainConfig\n')
    assert r.returncode != 0
    assert "workbench.data.upward -> workbench.train.trainer" in r.stdout


def test_training_may_not_import_the_cohort_generator(tmp_path: Path) -> None:
    r = _lint_with(tmp_path, "workbench/train/peek.py", "from workbench.cohort.generate import generate_cohort\n")
    assert r.returncode != 0
    assert "workbench.train.peek -> workbench.cohort.generate" in r.stdout
