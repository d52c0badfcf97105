"""The FedAvg model's auxiliary loss weight, chosen on the training cohort's val split (never the evaluation cohort).

Why: ``bench model``'s recipe sweep (``workbench.bench.recipe_sweep``) chose an auxiliary per-modality loss weight
of 1.0 (default 0.3) for the central fused model on val. The FedAvg model that ``bench federated`` scores and
``bench explain`` explains trains the same fused model with Flower, and its recipe (``FedConfig``) had not been
asked the same question. This asks it, for FedAvg itself, on the same footing.

Stated before any model here was trained:
- two recipes (``RECIPES``): the auxiliary weight 0.3 and 1.0; everything else is ``bench federated``'s plan;
- each is trained for the same 5 training seeds with Flower (``bench federated``'s FedAvg variant);
- the choice is the recipe with the better mean **val AUROC** over the seeds (the rule of ``recipe_sweep``);
- reported beside it, not chosen on: the stated risk's calibration against the true risk on the val and calib
  cases, cross-fitted with the production calibration (``workbench.bench.calibration_sweep``'s figure), per site
  and its worst site (the committed ``fedavg_recipe_val.jsonl`` was written while that fit read val and calib
  alone; it now reads the train cases too, as production does).
Nothing here reads the evaluation cohort; every record says ``"split": "val"``.

    python -m workbench.bench.fedavg_recipe train [--seeds 0-4] [--recipes aux_weight_0.3,aux_weight_1]
    python -m workbench.bench.fedavg_recipe choose [--seeds 0-4] [--out bench/results]

``train`` is resumable (a finished seed is kept); ``choose`` writes ``fedavg_recipe_val.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from federated.config import FedConfig
from workbench.errors import WorkbenchError

SWEPT = "aux_weight"  # the one FedConfig field the recipes differ in
RECIPES: dict[str, dict[str, Any]] = {"aux_weight_0.3": {SWEPT: 0.3}, "aux_weight_1": {SWEPT: 1.0}}
SEEDS = 5


def plan_without_sweep(plan: dict[str, Any]) -> dict[str, Any]:
    """``bench federated``'s plan without the swept field: the plan as it was before the field was part of it."""
    return {k: v for k, v in plan.items() if k != SWEPT}


def sweep_root(setup: Any) -> Path:
    """The sweep's folder: beside the benchmark's work folder, named by the plan without the swept field (so that
    adopting a recipe, which changes the plan, leaves the sweep where it is)."""
    from workbench.bench.federated_bench import work_folder

    older = work_folder(setup.work.parent, setup.cohorts.tag, plan_without_sweep(setup.plan))
    return older.with_name(older.name + "-fedavg-recipes")


def recipe_run(setup: Any, recipe: str, seed: int) -> Path:
    """The FedAvg RUN of ``recipe`` and training seed ``seed`` (trained once and kept)."""
    from workbench.bench.federated_bench import _cached, _federated, _seeded

    if recipe not in RECIPES:
        raise WorkbenchError(f"fedavg recipe {recipe!r}: unknown (known: {', '.join(RECIPES)})")
    sd = sweep_root(setup) / recipe / f"seed{seed}"
    fed = FedConfig(**{**asdict(_seeded(setup.base, seed)), **RECIPES[recipe]})
    _cached(sd, "fedavg", lambda: _federated("fedavg", sd, fed))
    return sd / "fedavg" / "run"


def val_logits(setup: Any, runs: dict[int, Path]) -> tuple[Any, np.ndarray]:
    """The val and calib cases (``calibration_sweep.Cases``, with the train cases the production stated risk also
    reads) with each seed's logits, and the val rows' mask."""
    from workbench.bench.calibration_sweep import cases_of

    cases = cases_of(setup, runs)
    return cases, np.arange(len(cases.labels)) < len(setup.data["val"])  # cases_of lists val first, then calib


def score(cases: Any, is_val: np.ndarray, partitions: int = 4) -> dict[str, Any]:
    """Val AUROC per seed and the production stated risk's cross-fitted calibration against the true risk."""
    from workbench.bench.calibration_sweep import sweep
    from workbench.metrics import auroc

    y = cases.labels[is_val]
    per_seed = {s: auroc(y, z[is_val]) for s, z in cases.logits.items()}
    cal = sweep(cases, partitions, {"production stated risk": {}})[0]  # UncertaintyConfig's defaults
    return {"val_auroc": float(np.mean(list(per_seed.values()))),
            "val_auroc_sd": float(np.std(list(per_seed.values()), ddof=1)) if len(per_seed) > 1 else 0.0,
            "val_auroc_by_seed": {str(s): v for s, v in per_seed.items()},
            "ece_vs_true_risk_per_site": cal["ece_vs_true_risk_per_site"],
            "worst_site_ece_vs_true_risk": cal["worst_site_ece_vs_true_risk"],
            "n_val": int(is_val.sum()), "n_val_calib": int(len(is_val))}


def choose(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule stated in the module docstring: the better mean val AUROC."""
    if not records:
        raise WorkbenchError("fedavg recipe: nothing trained yet (run `train` first)")
    return max(records, key=lambda r: r["val_auroc"])


def main(argv: list[str] | None = None) -> int:
    from workbench.atomic import write_text
    from workbench.bench.federated_bench import federated_setup
    from workbench.bench.model_seeds import parse_seeds

    ap = argparse.ArgumentParser(prog="python -m workbench.bench.fedavg_recipe", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("train", "choose"))
    ap.add_argument("--seeds", default=f"0-{SEEDS - 1}")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    seeds, recipes = parse_seeds(a.seeds), [r for r in a.recipes.split(",") if r]
    setup = federated_setup(quick=False, progress=False)
    setup = replace(setup, base=replace(setup.base, progress=False))
    if a.command == "train":
        for recipe in recipes:
            for s in seeds:
                print(recipe, s, recipe_run(setup, recipe, s), flush=True)
        return 0
    records = []
    for recipe in recipes:
        runs = {s: recipe_run(setup, recipe, s) for s in seeds}
        cases, is_val = val_logits(setup, runs)
        records.append({"recipe": recipe, "config": RECIPES[recipe], "split": "val",
                        "cases": "the training cohort's val split (AUROC); val and calib cross-fitted (calibration)",
                        "seeds": seeds, **score(cases, is_val, a.partitions)})
    chosen = choose(records)
    for r in records:
        r["chosen"] = r is chosen
        print(f"{r['recipe']:16s} val AUROC {r['val_auroc']:.4f} (sd {r['val_auroc_sd']:.4f})  worst site vs true risk "
              f"{r['worst_site_ece_vs_true_risk']:.3f}  "
              + " ".join(f"{s}={v:.3f}" for s, v in r["ece_vs_true_risk_per_site"].items()))
    print("chosen:", chosen["recipe"])
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        write_text(a.out / "fedavg_recipe_val.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return 0


__all__ = ["RECIPES", "choose", "recipe_run", "score", "sweep_root", "val_logits"]

if __name__ == "__main__":
    raise SystemExit(main())
