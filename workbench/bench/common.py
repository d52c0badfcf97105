"""What every benchmark JSON carries (machine, git sha, preset, wall time) and the cached cohorts they use: the
training cohort of a preset and seed, and the evaluation cohort its final figures are scored on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from workbench.cohort.config import EVAL_SEED, PRESETS, CohortConfig
from workbench.errors import WorkbenchError


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


def cohort_tag(preset: str, seed: int, truth: str = "brock") -> str:
    """The cache folder name: ``{preset}-seed{seed}`` for the Brock truth (so existing caches are reused), with a
    ``-{truth}`` part for any other."""
    return f"{preset}-seed{seed}" + ("" if truth == "brock" else f"-{truth}")


def cohort_config(preset: str, seed: int, truth: str = "brock", **sizes: Any) -> CohortConfig:
    """The request for a benchmark's cohort (CohortConfig refuses an unknown truth in one line)."""
    return CohortConfig(preset=preset, seed=seed, truth=truth, **sizes)


def cached_cohort(preset: str, seed: int = 0, *, truth: str = "brock", progress: bool = True) -> Path:
    """The preset's cohort from a fixed seed, generated once into the cache and reused (resumes if killed)."""
    return _generated(cohort_tag(preset, seed, truth), cohort_config(preset, seed, truth), progress)


def _generated(name: str, config: CohortConfig, progress: bool) -> Path:
    from workbench.cohort.generate import generate_cohort

    out = cohort_cache_root() / name
    if not (out / "cohort.json").exists():
        generate_cohort(out, config, progress=progress)
    return out


def cohort_request(cohort_dir: Path) -> dict[str, Any]:
    """What a generated cohort was asked for (``cohort.json``'s request); ``truth`` is brock when not stated."""
    f = Path(cohort_dir) / "cohort.json"
    if not f.is_file():
        raise WorkbenchError(f"{cohort_dir}: no cohort.json; give the evaluation cohort with --eval-cohort")
    request = dict(json.loads(f.read_text())["request"])
    request.setdefault("truth", "brock")
    return request


def evaluation_cohort(train_dir: Path, eval_seed: int = EVAL_SEED, *, progress: bool = True) -> Path:
    """The evaluation cohort of a training cohort: the same request (preset, sites, patients, truth) from
    ``eval_seed``, generated once into the cache (docs/architecture.md §9). A preset's own sizes reuse the
    preset's cache name (``full-seed1000003``)."""
    r = cohort_request(train_dir)
    if int(r["seed"]) == eval_seed:
        raise WorkbenchError(f"--eval-seed {eval_seed} is the training cohort's seed: the evaluation cohort must be "
                             "one no model or choice has seen")
    preset, truth = r["preset"], r["truth"]
    n_sites, n_patients = len(r["sites"]), int(r["patients_per_site"])
    default = PRESETS[preset] == (n_sites, n_patients)
    name = cohort_tag(preset if default else f"{preset}-{n_sites}x{n_patients}", eval_seed, truth)
    sizes = {} if default else {"sites": n_sites, "patients": n_patients}
    return _generated(name, cohort_config(preset, eval_seed, truth, transfer_syntax=r.get("transfer_syntax"),
                                          **sizes), progress)


def check_evaluation_cohort(train_dir: Path, eval_dir: Path) -> None:
    """Refuse an evaluation cohort that is the training cohort, or that differs from it in sites or truth."""
    if Path(train_dir).resolve() == Path(eval_dir).resolve():
        raise WorkbenchError(f"{eval_dir}: the evaluation cohort is the training cohort")
    sites = [sorted(d.name for d in Path(c).iterdir() if (d / "manifest.csv").is_file()) for c in (train_dir, eval_dir)]
    if sites[0] != sites[1]:
        raise WorkbenchError(f"{eval_dir}: sites {sites[1]} differ from the training cohort's {sites[0]}")
    if (Path(train_dir) / "cohort.json").is_file() and (Path(eval_dir) / "cohort.json").is_file():
        a, b = cohort_request(train_dir), cohort_request(eval_dir)
        if a["truth"] != b["truth"]:
            raise WorkbenchError(f"{eval_dir}: truth {b['truth']!r} differs from the training cohort's {a['truth']!r}")
        if a["seed"] == b["seed"]:
            raise WorkbenchError(f"{eval_dir}: generated from the training cohort's seed {a['seed']}")


@dataclass(frozen=True)
class Cohorts:
    """One benchmark run's two cohorts: choices are made on ``train``'s val split, figures scored on ``eval``."""

    train: Path
    tag: str  # the training cohort's name in work folders (``full-seed0``, ``full-seed0-shifted``, a folder name)
    label: str  # the JSON's ``preset``: the preset, or the --cohort folder
    truth: str
    eval: Path | None = None  # None until ``with_evaluation``
    eval_seed: int | None = None  # None also when an --eval-cohort folder without cohort.json was given


def training_cohort(*, quick: bool, cohort: str | Path | None, seed: int, truth: str = "brock",
                    progress: bool = True) -> Cohorts:
    """The training cohort: the preset's from ``seed`` with ``truth`` (cached), or the ``cohort`` folder."""
    preset = "small" if quick else "full"
    if not cohort:
        return Cohorts(cached_cohort(preset, seed, truth=truth, progress=progress), cohort_tag(preset, seed, truth),
                       preset, truth)
    train = Path(cohort)
    if (train / "cohort.json").is_file() and cohort_request(train)["truth"] != truth:
        raise WorkbenchError(f"{train}: generated with truth {cohort_request(train)['truth']!r}, not --truth {truth}")
    return Cohorts(train, train.name, str(cohort), truth)


def with_evaluation(cohorts: Cohorts, *, eval_seed: int | None = None, eval_cohort: str | Path | None = None,
                    progress: bool = True) -> Cohorts:
    """``cohorts`` with its evaluation cohort: ``eval_cohort``, or the training request from ``eval_seed`` (default
    ``EVAL_SEED``); checked to share sites and truth with the training cohort and not its seed."""
    eval_seed = EVAL_SEED if eval_seed is None else eval_seed
    evaluation = Path(eval_cohort) if eval_cohort else evaluation_cohort(cohorts.train, eval_seed, progress=progress)
    check_evaluation_cohort(cohorts.train, evaluation)
    seed_of_eval = int(cohort_request(evaluation)["seed"]) if (evaluation / "cohort.json").is_file() else None
    return replace(cohorts, eval=evaluation, eval_seed=seed_of_eval)


def envelope(preset: str, wall_s: float) -> dict:
    return {"machine": machine(), "git_sha": git_sha(), "preset": preset, "wall_s": round(wall_s, 2)}
