"""The federated benchmark's two pooled variants, trainable away from the cohort (a GPU machine).

``bench federated`` trains, per seed, two pooled models beside its Flower runs: ``centralized`` (every trainable
parameter, the pooled train split, the federation's budget of passes) and ``centralized_head`` (the fused head
alone: the DP subset without DP). Neither needs Flower, the cohort or the DICOM stack: only the starting model,
the training split with the frozen readers' states, and the plan. ``pack`` writes exactly that (about 24 kB a
case), ``train`` runs it on any device, and ``import`` puts each trained model where ``bench federated`` looks for
it (``seed<s>/centralized/model`` and ``seed<s>/centralized.json``), so the benchmark then only scores it.
The same function trains them inside the benchmark (``train_pooled``), so both routes are one recipe.

    here:   python -m workbench.bench.federated_central pack [--truth T] .pack/central-T
    there:  python -m workbench.bench.federated_central train .pack/central-T --seeds 1-2 --device cuda --out DIR
    here:   python -m workbench.bench.federated_central import DIR [--truth T]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from workbench.jsonout import write_json
from workbench.models.model import load_model, save_model
from workbench.runtime.encode import EncodedCases, with_ct_states
from workbench.train.dp_subsets import freeze_for_dp
from workbench.train.trainer import TrainConfig, train_model

PLAN = "central.json"
VARIANTS = ("centralized", "centralized_head")


def starting_model(init: str | Path) -> torch.nn.Module:
    """``federated.task.build`` for a run that starts from ``init``: the model with its note reader frozen."""
    model = load_model(init)
    if model.text_encoder is not None:
        for p in [*model.text_encoder.encoder.parameters(), *model.text_encoder.value_proj.parameters()]:
            p.requires_grad_(False)
    return model


def train_pooled(init: str | Path, train: EncodedCases, run: Path, *, seed: int, epochs: int, batch_size: int,
                 lr: float, head_only: bool, dp_train: str, device: str = "cpu",
                 progress: bool = False, aux_weight: float = TrainConfig.aux_weight) -> dict[str, Any]:
    """One pooled variant (module docstring): trained into ``run/model``; its seconds and samples per second."""
    torch.manual_seed(seed)
    model = starting_model(init)
    if head_only:  # the DP subset's ceiling without DP: the same head, pooled, plain
        freeze_for_dp(model, dp_train)
        lr = 1e-2
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=0, seed=seed, progress=progress,
                      device=device, aux_weight=aux_weight)
    t0 = time.perf_counter()
    result = train_model(model, train, None, cfg, run / ".checkpoint")
    save_model(model.cpu(), run / "model")
    shutil.rmtree(run / ".checkpoint", ignore_errors=True)
    return {"seconds": time.perf_counter() - t0, "train_samples_per_s": result.samples_per_s, "train_device": device}


def pack(truth: str, dest: Path) -> Path:
    """The starting model, the training split with the frozen CT reader's states (no patches) and the plan."""
    from workbench.bench.federated_bench import federated_setup

    setup = federated_setup(truth=truth, progress=True)
    model = starting_model(setup.init)
    data = with_ct_states(model, setup.data["train"])
    dest.mkdir(parents=True, exist_ok=True)
    EncodedCases(data.case_ids, data.sites, {k: v for k, v in data.tensors.items()
                                             if k not in ("ct_patch", "ct_context")},
                 list(data.refused)).save(dest / "encoded_train.pt")
    from workbench.models.shipped import shipped

    init = "shipped:fusion_init"  # the repository carries it: no copy
    if setup.init.resolve() != shipped("fusion_init").resolve():
        shutil.copytree(setup.init, dest / "init", dirs_exist_ok=True)
        init = "init"
    plan = setup.plan
    write_json(dest / PLAN, {"truth": truth, "work": str(setup.work), "init": init,
                             "epochs": plan["rounds"] * plan["local_epochs"],
                             "batch_size": plan["central_batch_size"], "lr": setup.base.lr,
                             "dp_train": setup.base.dp_train, "aux_weight": setup.base.aux_weight})
    return dest


def train(packed: Path, seeds: list[int], device: str, out: Path, progress: bool = False) -> list[Path]:
    """Every pooled variant for every seed from a packed folder, into ``out/seed<s>/<variant>/``."""
    plan = json.loads((packed / PLAN).read_text())
    data = EncodedCases.load(packed / "encoded_train.pt")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(packed / PLAN, out / PLAN)  # names the work folder the models go back to
    done = []
    for s in seeds:
        for name in VARIANTS:
            run = out / f"seed{s}" / name
            summary = train_pooled(_init_of(packed, plan), data, run, seed=s, epochs=plan["epochs"],
                                   batch_size=plan["batch_size"], lr=plan["lr"], head_only=name == "centralized_head",
                                   dp_train=plan["dp_train"], device=device, progress=progress,
                                   aux_weight=float(plan.get("aux_weight", TrainConfig.aux_weight)))  # older packs: 0.3
            write_json(out / f"seed{s}" / f"{name}.json", summary)
            done.append(run)
    return done


def _init_of(packed: Path, plan: dict[str, Any]) -> Path:
    from workbench.models.shipped import shipped

    init = str(plan.get("init", "init"))
    return shipped(init.split(":", 1)[1]) if init.startswith("shipped:") else packed / init


def import_trained(src: Path, work: Path) -> list[str]:
    """Models sent back by ``train`` into the benchmark's work folder (a seed's variant already there is kept)."""
    placed = []
    for summary in sorted(src.glob("seed*/*.json")):
        name, seed_dir = summary.stem, work / summary.parent.name
        if name not in VARIANTS or (seed_dir / f"{name}.json").exists():
            continue
        shutil.copytree(summary.parent / name / "model", seed_dir / name / "model", dirs_exist_ok=True)
        write_json(seed_dir / f"{name}.json", json.loads(summary.read_text()))  # last: the variant is now done
        placed.append(f"{seed_dir.name}/{name}")
    return placed


def main(argv: list[str] | None = None) -> int:
    from workbench.bench.model_seeds import parse_seeds

    ap = argparse.ArgumentParser(prog="python -m workbench.bench.federated_central", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("dest", type=Path)
    p.add_argument("--truth", default="brock", choices=("brock", "shifted"))
    t = sub.add_parser("train")
    t.add_argument("packed", type=Path)
    t.add_argument("--seeds", default="0-2")
    t.add_argument("--device", default="cpu")
    t.add_argument("--out", type=Path, required=True)
    i = sub.add_parser("import")
    i.add_argument("src", type=Path)
    i.add_argument("--work", type=Path, help="the benchmark's work folder (default: the packed plan's)")
    a = ap.parse_args(argv)
    if a.command == "pack":
        print(pack(a.truth, a.dest))
    elif a.command == "train":
        print("\n".join(str(r) for r in train(a.packed, parse_seeds(a.seeds), a.device, a.out)))
    else:
        work = a.work or Path(json.loads((a.src / PLAN).read_text())["work"])
        placed = import_trained(a.src, work)
        print(f"{len(placed)} models into {work}: " + ", ".join(placed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
