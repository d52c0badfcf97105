"""How ``bench model``'s variants are trained: a few training recipes, chosen per variant on the training cohort's
``val`` split, never on the evaluation cohort.

Why: every variant was trained with ``TrainConfig``'s defaults, which were set for the fused model on one seed
before issue 16's protocol existed. Under that protocol the fused model scored 0.9499 of the Bayes ceiling, and the
late-fusion baseline beat it on val and on the evaluation cohort alike; before concluding that the gated fusion is
the weaker design, each variant gets the same small, a priori list of recipes (regularisation, learning rate,
auxiliary heads, modality dropout, patience) and keeps the one with the best mean val AUROC over the training
seeds. Every variant is tuned the same way, so the paired differences (fusion gain) stay fair.

How: on a ``bench model`` work folder (or its packed copy, ``model_seeds pack``), each recipe trains each variant
for each seed into ``sweep/<recipe>/seed<s>/<variant>/`` with the model, its ``trained.json`` (best val AUROC,
epochs) and nothing scored on the evaluation cohort. ``records`` turns those into ``recipe_sweep_val.jsonl`` (one
record per variant and recipe, ``"split": "val"``); ``adopt`` copies each variant's chosen recipe's models to
``seed<s>/<variant>/``, where ``bench model`` finds them trained and scores them once.

    python -m workbench.bench.recipe_sweep train WORK --recipe NAME --seeds 0-4 [--device cuda]
    python -m workbench.bench.recipe_sweep choose WORK [--out bench/results]        (writes the jsonl, prints)
    python -m workbench.bench.recipe_sweep adopt WORK                               (the chosen models in place)
    python -m workbench.bench.recipe_sweep export WORK DEST / import SRC WORK       (the trip to a GPU machine)

``model_seeds.RECIPES`` lists the recipes and ``model_seeds.CHOSEN`` holds the choice, so that a fresh ``bench model``
trains each variant with its chosen recipe from scratch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.model_seeds import (
    CHOSEN,
    RECIPES,
    Bundle,
    base_config,
    export_trained,
    import_trained,
    load_training,
    parse_seeds,
    train_variant,
    variants,
)
from workbench.errors import WorkbenchError

# fields that mean nothing to a model that reads one modality: such a recipe would repeat the base
TWO_MODALITY_FIELDS = {"aux_weight", "modality_dropout"}
SWEEP = "sweep"
OUT_NAME = "recipe_sweep_val.jsonl"


def applies(recipe: str, variant: str) -> bool:
    """Whether ``recipe`` changes anything for ``variant`` (single-modality models ignore fusion-only fields)."""
    fields = set(RECIPES[recipe])
    return not fields or variant in ("fused", "late_fusion") or not fields <= TWO_MODALITY_FIELDS


def train_recipe(work: Path, recipe: str, seeds: list[int], *, device: str = "cpu", progress: bool = True,
                 only: list[str] | None = None) -> list[Path]:
    """Train every variant (or those in ``only``) the recipe applies to, for every seed, under
    ``work/sweep/<recipe>/``; resumes at what is missing. Nothing is scored on the evaluation cohort."""
    if recipe not in RECIPES:
        raise WorkbenchError(f"--recipe {recipe!r}: not one of {', '.join(RECIPES)}")
    bundle = Bundle.read(work)
    data = load_training(work)  # the evaluation sets are neither read nor scored here
    configs = variants(work / "note_reader", bundle.ct_reader_path(work))
    base = base_config(bundle, device, progress)
    done = []
    for s in seeds:
        for name, cfg in configs.items():
            if (only and name not in only) or not applies(recipe, name):
                continue
            seed_dir = work / SWEEP / recipe / f"seed{s}"
            train_variant(name, cfg, seed_dir, data, replace(base, seed=s, **RECIPES[recipe]), {}, bundle.eval_name)
            done.append(seed_dir / name)
    return done


def records(work: Path) -> list[dict[str, Any]]:
    """One record per variant and recipe: the mean and spread over seeds of the best val AUROC, epochs run; the
    single-modality variants' base record stands for the recipes that do not apply to them."""
    out = []
    variants = sorted({p.parent.name for p in (work / SWEEP).glob("*/seed*/*/trained.json")})
    for variant in variants:
        for recipe in RECIPES:
            if not applies(recipe, variant):
                continue
            runs = sorted((work / SWEEP / recipe).glob(f"seed*/{variant}/trained.json"))
            if not runs:
                continue
            t = [json.loads(p.read_text()) for p in runs]
            auc = np.array([np.nan if r["best_val_auroc"] is None else r["best_val_auroc"] for r in t], dtype=float)
            ok = np.isfinite(auc)  # a val split of one class has no AUROC (tiny cohorts)
            out.append({"variant": variant, "recipe": recipe, "fields": RECIPES[recipe], "split": "val",
                        "seeds": [r["seed"] for r in t],
                        "val_auroc_mean": float(auc[ok].mean()) if ok.any() else None,
                        "val_auroc_sd": float(auc[ok].std(ddof=1)) if ok.sum() > 1 else None,
                        "val_auroc_by_seed": [float(a) if np.isfinite(a) else None for a in auc],
                        "epochs_run_mean": float(np.mean([r["epochs_run"] for r in t])),
                        "best_epoch_mean": float(np.mean([r["best_epoch"] for r in t])),
                        "train_device": sorted({r.get("train_device", "cpu") for r in t})})
    return out


def choose(recs: list[dict[str, Any]]) -> dict[str, str]:
    """Each variant's recipe with the best mean val AUROC over the seeds every recipe of it trained (a recipe
    that lacks seeds the others have is not compared)."""
    out = {}
    for variant in sorted({r["variant"] for r in recs}):
        rs = [r for r in recs if r["variant"] == variant]
        full = max(len(r["seeds"]) for r in rs)
        out[variant] = max((r for r in rs if len(r["seeds"]) == full),
                           key=lambda r: -np.inf if r["val_auroc_mean"] is None else r["val_auroc_mean"])["recipe"]
    return out


def adopt(work: Path, chosen: dict[str, str]) -> list[Path]:
    """Each variant's chosen recipe's trained models copied to ``work/seed<s>/<variant>/`` (what ``bench model``
    scores); a variant already trained there under another recipe is replaced, with its scores."""
    from workbench.jsonout import write_json

    moved = []
    for variant, recipe in chosen.items():
        for src in sorted((work / SWEEP / recipe).glob(f"seed*/{variant}")):
            if not (src / "trained.json").is_file() or not (src / "model").is_dir():
                raise WorkbenchError(f"{src}: not trained (no trained.json or model/)")
            dest = work / src.parent.name / variant
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            shutil.copytree(src / "model", dest / "model")
            summary = json.loads((src / "trained.json").read_text())
            write_json(dest / "trained.json", {**summary, "recipe": recipe})
            moved.append(dest)
    return moved


def main(argv: list[str] | None = None) -> int:
    from workbench.atomic import write_text

    ap = argparse.ArgumentParser(prog="python -m workbench.bench.recipe_sweep", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one recipe's variants for some seeds (no evaluation-cohort scores)")
    t.add_argument("work", type=Path)
    t.add_argument("--recipe", required=True, choices=list(RECIPES))
    t.add_argument("--seeds", default="0-4")
    t.add_argument("--device", default="cpu")
    t.add_argument("--only", nargs="*", default=None, help="variants to train (default every one)")
    t.add_argument("--quiet", action="store_true")
    c = sub.add_parser("choose", help="val records of every trained recipe, and each variant's choice")
    c.add_argument("work", type=Path)
    c.add_argument("--out", type=Path, default=None, help=f"write {OUT_NAME} here")
    d = sub.add_parser("adopt", help="copy each variant's chosen models to where bench model scores them")
    d.add_argument("work", type=Path)
    e = sub.add_parser("export", help="every recipe's models' own weights into DEST/<recipe>/ (for the trip back)")
    e.add_argument("work", type=Path)
    e.add_argument("dest", type=Path)
    i = sub.add_parser("import", help="models sent back by export, rebuilt under WORK/sweep/<recipe>/")
    i.add_argument("src", type=Path)
    i.add_argument("work", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.command == "export":  # each recipe's models into DEST/<recipe>/
            recipes = [r for r in RECIPES if (a.work / SWEEP / r).is_dir()]
            for r in recipes:
                export_trained(a.work, a.dest / r, root=a.work / SWEEP / r)
            print(f"export: {', '.join(recipes) or 'no recipe'}")
            return 0
        if a.command == "import":  # SRC/<recipe>/ rebuilt under WORK/sweep/<recipe>/
            recipes = [r for r in RECIPES if (a.src / r).is_dir()]
            for r in recipes:
                import_trained(a.src / r, a.work, root=a.work / SWEEP / r)
            print(f"import: {', '.join(recipes) or 'no recipe'}")
            return 0
        if a.command == "train":
            n = len(train_recipe(a.work, a.recipe, parse_seeds(a.seeds), device=a.device, progress=not a.quiet,
                                 only=a.only))
            print(f"{a.recipe}: {n} models")
            return 0
        recs = records(a.work)
        if not recs:
            raise WorkbenchError(f"{a.work / SWEEP}: no trained recipe")
        chosen = choose(recs)
        if a.command == "choose":
            for r in recs:
                mark = " <- chosen" if chosen[r["variant"]] == r["recipe"] else ""
                print(f"{r['variant']:12s} {r['recipe']:22s} val AUROC {r['val_auroc_mean'] or float('nan'):.4f} "
                      f"(sd {r['val_auroc_sd'] or 0:.4f}, {len(r['seeds'])} seeds, {r['epochs_run_mean']:.1f} "
                      f"epochs){mark}")
            if a.out:
                a.out.mkdir(parents=True, exist_ok=True)
                write_text(a.out / OUT_NAME, "".join(json.dumps({**r, "chosen": chosen[r["variant"]] == r["recipe"]})
                                                    + "\n" for r in recs))
            return 0
        print(f"{len(adopt(a.work, chosen))} models adopted: {chosen}")
        return 0
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["CHOSEN", "RECIPES", "adopt", "applies", "choose", "records", "train_recipe"]
