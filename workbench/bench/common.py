"""What every benchmark JSON carries (machine, git sha, preset, wall time) and the cached cohorts they use."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from workbench.cohort.config import CohortConfig


def machine() -> str:
    """A human-readable name for where this ran, GPU included when there is one."""
    cpu = platform.processor() or platform.machine()
    desc = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu})"
    try:
        import torch

        if torch.cuda.is_available():
            desc += f", GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - torch missing or broken CUDA: report the CPU only
        pass
    return desc


def git_sha() -> str:
    if os.environ.get("WORKBENCH_GIT_SHA"):  # a copy of the tree without .git (the GPU machine)
        return os.environ["WORKBENCH_GIT_SHA"]
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cohort_cache_root() -> Path:
    return Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")) / "cohorts"


def cached_cohort(preset: str, seed: int = 0, *, progress: bool = True) -> Path:
    """The preset's cohort from a fixed seed, generated once into the cache and reused (resumes if killed)."""
    from workbench.cohort.generate import generate_cohort

    out = cohort_cache_root() / f"{preset}-seed{seed}"
    if not (out / "cohort.json").exists():
        generate_cohort(out, CohortConfig(preset=preset, seed=seed), progress=progress)
    return out


def envelope(preset: str, wall_s: float) -> dict:
    return {"machine": machine(), "git_sha": git_sha(), "preset": preset, "wall_s": round(wall_s, 2)}
