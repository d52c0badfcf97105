"""The notebooks' shared RUN: the session's tiny run, copied and calibrated (workbench calibrate)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def calibrated_run(tiny_run, tiny_cohort, tmp_path_factory) -> Path:  # noqa: ANN001
    run = tmp_path_factory.mktemp("nb") / "run"
    shutil.copytree(tiny_run, run)
    res = subprocess.run([sys.executable, "-m", "workbench.cli", "calibrate", str(run), str(tiny_cohort), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return run
