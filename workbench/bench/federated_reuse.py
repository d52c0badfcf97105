"""Runs ``bench federated`` may take instead of training them again: the same training, already done elsewhere.

Two cases, each checked before anything is copied, each recorded in the variant's summary (``reused_from``):
- **the FedAvg run of a swept recipe**: ``workbench.bench.fedavg_recipe`` trains FedAvg under each recipe with the
  benchmark's own function (``_federated``) and the plan's ``FedConfig`` with the recipe's fields set. When the plan
  adopts a recipe, the sweep's run for a seed *is* the plan's FedAvg run for that seed; it is taken as it is.
- **the head-only variants of the plan before ``aux_weight`` was part of it**: ``centralized_head`` and the DP
  runs train the fused head alone (``dp-train = head``). The auxiliary loss reads the modality heads, which are
  frozen there, so it adds no gradient to anything they train, and the auxiliary weight cannot change them
  (``tests/bench/test_federated_reuse.py``: a seeded DP round gives the same weights under 0.3 and 1.0). Their
  ledgers and epsilons come with them; a DP run's secret draw is simply the draw this benchmark scores.
Only a plan that equals this one without ``aux_weight`` qualifies (the older folder's name is that plan's digest:
checked here, so another recipe's folder is never taken).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from workbench.jsonout import write_json

HEAD_ONLY = ("centralized_head", "dp_eps1", "dp_eps3", "dp_eps8")  # fused head alone: no auxiliary gradient


def _take(src_seed: Path, dst_seed: Path, name: str, source: str) -> bool:
    """Copy ``name``'s run (and its summary last, which marks the variant done) from one seed folder to another."""
    if (dst_seed / f"{name}.json").exists() or not (src_seed / f"{name}.json").exists():
        return False
    shutil.copytree(src_seed / name, dst_seed / name, dirs_exist_ok=True)
    for scores in src_seed.glob(f"{name}.eval-*.json"):  # its evaluation logits (checked against the cases on use)
        shutil.copy(scores, dst_seed / scores.name)
    summary = json.loads((src_seed / f"{name}.json").read_text())
    write_json(dst_seed / f"{name}.json", {**summary, "reused_from": source})
    return True


def pre_aux_work(setup: Any) -> Path | None:
    """The work folder of this plan without ``aux_weight`` (the plan as it was before the field existed)."""
    from workbench.bench.fedavg_recipe import SWEPT, plan_without_sweep
    from workbench.bench.federated_bench import work_folder

    if SWEPT not in setup.plan:
        return None
    folder = work_folder(setup.work.parent, setup.cohorts.tag, plan_without_sweep(setup.plan))
    return folder if folder.is_dir() and folder != setup.work else None


def reuse(setup: Any, seed: int) -> list[str]:
    """Fill ``setup.work/seed<seed>/`` with the runs above that it lacks; the names of those taken."""
    from workbench.bench.fedavg_recipe import RECIPES, sweep_root

    dst = setup.work / f"seed{seed}"
    dst.mkdir(parents=True, exist_ok=True)
    taken = []
    for recipe, fields in RECIPES.items():
        if all(getattr(setup.base, k) == v for k, v in fields.items()):
            src = sweep_root(setup) / recipe / f"seed{seed}"
            if _take(src, dst, "fedavg", f"{sweep_root(setup).name}/{recipe}/seed{seed}"):
                taken.append("fedavg")
            break
    older = pre_aux_work(setup)
    if older is not None:
        for name in HEAD_ONLY:
            if _take(older / f"seed{seed}", dst, name, f"{older.name}/seed{seed}"):
                taken.append(name)
    return taken


__all__ = ["HEAD_ONLY", "pre_aux_work", "reuse"]
