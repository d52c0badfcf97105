"""The training half of ``workbench bench model``: every variant for every training seed, from a work folder alone.

``bench model`` first prepares a work folder (cohorts generated, readers pretrained, the training splits and the
evaluation cohort encoded); what is left is training four small models per seed and scoring them, which is all
matrix work. This module does only that, and imports only the model, runtime and train layers, so the same
folder can be copied to a GPU machine that holds no cohort (the package with monai and pydicom installed is
enough), trained there with ``python -m workbench.bench.model_seeds train PACKED --device cuda``, and each model's
own weights sent back (``export`` there, ``import`` here): ``bench model`` then finds every seed trained, scores
the models on the evaluation cohort and assembles the figures (``bench/model_seeds_gpu.sh``; ``pack`` makes the
copy small by sending the frozen CT reader's states instead of the CT patches, and leaves the evaluation sets
behind).

Work folder (``prepare`` in ``model_bench`` writes it; ``bundle.json`` names the rest)::

    encoded_train.pt, encoded_val.pt       the training cohort's train and val splits
    eval-<cohort>/encoded.pt               every case of the evaluation cohort, exact centres
    eval-<cohort>/encoded_marked.pt        the same with reader-like marks
    note_reader/, ct_reader/ (or bundle.json's ct_reader)   the frozen pretrained readers
    seed<s>/<variant>/trained.json         what this module writes: the val-chosen calibration and training figures
    seed<s>/<variant>/eval-<cohort>.json   logits and gates on every evaluation case
    seed<s>/<variant>/model/               the trained model
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from workbench.errors import WorkbenchError
from workbench.jsonout import write_json
from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.fusion import FusionConfig
from workbench.models.model import (
    WEIGHTS,
    ModelConfig,
    build_model,
    load_model,
    save_model,
    trainable_parameters,
)
from workbench.models.text_encoder import TextEncoderConfig
from workbench.runtime.calibration import fit_calibration
from workbench.runtime.encode import EncodedCases, drop_modality, with_ct_states, with_note_states
from workbench.runtime.inference import predict_logits
from workbench.train.trainer import TrainConfig, pos_weight_of, train_model

BUNDLE = "bundle.json"
# training recipes: name -> TrainConfig fields that differ from the base (TrainConfig's defaults with the bundle's
# epochs and patience); written down before any was trained (workbench/bench/recipe_sweep.py trains and compares them)
RECIPES: dict[str, dict[str, Any]] = {
    "base": {},
    "aux_weight_1": {"aux_weight": 1.0},
    "modality_dropout_0.4": {"modality_dropout": 0.4},
    "weight_decay_0.1": {"weight_decay": 0.1},
    "lr_3e-4": {"lr": 3e-4},
    "patience_20": {"patience": 20},
}
# each variant's recipe as the sweep chose it on val (bench/results/recipe_sweep_val.jsonl); a variant not named
# trains with the base recipe
CHOSEN: dict[str, str] = {"fused": "aux_weight_1", "late_fusion": "aux_weight_1", "ct_only": "weight_decay_0.1",
                          "notes_only": "lr_3e-4"}


@dataclass(frozen=True)
class Bundle:
    """What a work folder holds besides the encoded sets: the evaluation cohort's name, the readers and the
    training schedule, so that a copy of the folder trains the same way anywhere."""
    eval_name: str
    epochs: int
    patience: int
    ct_reader: str = "ct_reader"  # relative to the work folder, or absolute

    def write(self, work: Path) -> None:
        write_json(work / BUNDLE, self.__dict__)

    @classmethod
    def read(cls, work: Path) -> Bundle:
        f = work / BUNDLE
        if not f.is_file():
            raise WorkbenchError(f"{work}: no {BUNDLE}; run `workbench bench model --prepare-only` to make the folder")
        return cls(**json.loads(f.read_text()))

    def ct_reader_path(self, work: Path) -> Path:
        p = Path(self.ct_reader)
        return p if p.is_absolute() else work / p


def variants(reader: Path | None, ct_reader: Path | None = None) -> dict[str, ModelConfig]:
    """The four models; those that read notes start from the pretrained note reader (frozen) when given, those
    that read CT from the pretrained CT reader (convolutions frozen) when given."""
    def text() -> TextEncoderConfig:
        return TextEncoderConfig(path=str(reader), freeze=True) if reader else TextEncoderConfig()

    def ct() -> CTEncoderConfig:
        return CTEncoderConfig(path=str(ct_reader), freeze=True) if ct_reader else CTEncoderConfig()

    return {
        "fused": ModelConfig(ct=ct(), text=text()),
        "ct_only": ModelConfig(modalities=("ct",), ct=ct()),
        "notes_only": ModelConfig(modalities=("notes",), text=text()),
        "late_fusion": ModelConfig(ct=ct(), text=text(), fusion=FusionConfig(mode="late")),
    }


def load_training(work: Path) -> dict[str, EncodedCases]:
    """The encoded training splits (train, val) of a work folder."""
    return {s: EncodedCases.load(work / f"encoded_{s}.pt") for s in ("train", "val")}


def load_inputs(work: Path, eval_name: str) -> tuple[dict[str, EncodedCases], dict[str, EncodedCases]]:
    """The encoded training splits and evaluation sets of a work folder (none in a packed copy: ``pack``)."""
    data = load_training(work)
    folder = work / f"eval-{eval_name}"
    evals = {}
    for key, name in (("exact", "encoded.pt"), ("marked", "encoded_marked.pt")):
        if (folder / name).exists():
            evals[key] = EncodedCases.load(folder / name)
    return data, evals


def with_reader_states(data: EncodedCases, model: torch.nn.Module) -> EncodedCases:
    """``data`` with both frozen readers' states (``with_ct_states``, ``with_note_states``) and without the CT
    patches they were read from. Every variant starts from the same frozen readers, so their states are computed
    once for all variants and seeds: scoring a model is then the fusion alone. ``model``: any fused variant."""
    out = with_note_states(model, with_ct_states(model, data))
    return EncodedCases(out.case_ids, out.sites, {k: v for k, v in out.tensors.items()
                                                  if k not in ("ct_patch", "ct_context")}, list(out.refused))


def pack(work: Path, dest: Path) -> Path:
    """A copy of a prepared work folder small enough to send to another machine (about 24 kB a case): the
    training cohort's train and val splits with the frozen CT reader's states in place of the CT patches
    (the states are all training reads from a frozen reader), both readers, and the bundle. The evaluation
    sets stay behind: the trained models come back and are scored where the cohorts are."""
    bundle = Bundle.read(work)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(work / "note_reader", dest / "note_reader", dirs_exist_ok=True)
    shutil.copytree(bundle.ct_reader_path(work), dest / "ct_reader", dirs_exist_ok=True)
    model = build_model(variants(work / "note_reader", bundle.ct_reader_path(work))["ct_only"])
    for split in ("train", "val"):
        data = with_ct_states(model, EncodedCases.load(work / f"encoded_{split}.pt"))
        EncodedCases(data.case_ids, data.sites, {k: v for k, v in data.tensors.items()
                                                 if k not in ("ct_patch", "ct_context")},
                     list(data.refused)).save(dest / f"encoded_{split}.pt")
    replace(bundle, ct_reader="ct_reader").write(dest)
    return dest


def train_variant(name: str, config: ModelConfig, seed_dir: Path, data: dict[str, EncodedCases],
                  train_config: TrainConfig, evals: dict[str, EncodedCases], eval_name: str) -> dict[str, Any]:
    """Train (or reload) one variant for one training seed on ``train_config.device``; its training figures
    and its logits on every case of the evaluation cohort, each kept on disk (``seed_dir/<name>/``)."""
    d = seed_dir / name
    trained, scored = d / "trained.json", d / f"eval-{eval_name}.json"
    device = train_config.device
    model = None
    if trained.exists():
        summary = json.loads(trained.read_text())
    else:
        torch.manual_seed(train_config.seed)  # the model's initial weights follow the training seed too
        model = build_model(config)
        result = train_model(model, data["train"], data["val"], train_config, d / ".checkpoint")
        save_model(model, d / "model")
        val = predict_logits(model, data["val"], device=device)
        summary = {
            "seed": train_config.seed,
            "train_config": {k: v for k, v in train_config.__dict__.items() if k not in ("progress", "device")},
            "calibration": fit_calibration(val["logits"], data["val"].labels,
                                           pos_weight_of(data["train"].labels)).to_dict(),  # chosen on val
            "trainable_params": trainable_parameters(model),
            "train_samples_per_s": result.samples_per_s,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "best_val_auroc": result.best_val_auroc,
            "train_seconds": result.seconds,
            "train_device": _device_name(device),
        }
        write_json(trained, summary)
    if "exact" not in evals:  # a packed copy: the models go back to be scored where the cohorts are
        return summary
    exact = evals["exact"]
    if scored.exists():
        preds = json.loads(scored.read_text())
        if preds["case_ids"] == exact.case_ids:
            return {**summary, **preds}
    model = model if model is not None else load_model(d / "model").to(device)
    p = predict_logits(model, exact, device=device)
    preds = {"case_ids": exact.case_ids, "logits": p["logits"].tolist(), "gate": p["gate"].tolist()}
    if len(model.modalities) == 2:
        for removed in model.modalities:
            sub = drop_modality(exact, removed)
            q = predict_logits(model, sub, device=device)
            preds[f"without_{removed}"] = {"case_ids": sub.case_ids, "logits": q["logits"].tolist(),
                                           "gate": q["gate"].tolist()}
        if "marked" in evals:
            marked = evals["marked"]
            preds["marked"] = {"case_ids": marked.case_ids,
                               "logits": predict_logits(model, marked, device=device)["logits"].tolist()}
    write_json(scored, preds)
    return {**summary, **preds}


OWN_WEIGHTS = "own_weights.safetensors"


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _fixed_tensors(config: ModelConfig) -> dict[str, torch.Tensor]:
    """The tensors a fresh build gives whatever the random seed: the frozen readers' weights and fixed inits.
    Only these are left out on the trip back, so rebuilding needs no random number generator to agree."""
    torch.manual_seed(0)
    a = build_model(config).state_dict()
    torch.manual_seed(1)
    b = build_model(config).state_dict()
    return {k: v for k, v in a.items() if torch.equal(v, b[k])}


def export_trained(work: Path, dest: Path, root: Path | None = None) -> Path:
    """Each trained model of a (packed) work folder for the trip back, about 0.4 MB instead of 2.5: the tensors
    that no fresh build fixes (the frozen readers are the same files at home: _fixed_tensors), its ``trained.json``, and a
    digest of the whole state that ``import_trained`` checks after putting the model together again. ``root``:
    where the ``seed<s>/<variant>/`` folders lie, when not in ``work`` itself (a recipe of ``recipe_sweep``)."""
    bundle = Bundle.read(work)
    configs = variants(work / "note_reader", bundle.ct_reader_path(work))
    for model_dir in sorted((root or work).glob("seed*/*/model")):
        name, seed_dir = model_dir.parent.name, model_dir.parent.parent.name
        state = load_file(str(model_dir / WEIGHTS))
        fixed = _fixed_tensors(configs[name])
        own = {k: v for k, v in state.items()
               if not (k in fixed and fixed[k].shape == v.shape and torch.equal(fixed[k], v))}
        out = dest / seed_dir / name
        out.mkdir(parents=True, exist_ok=True)
        save_file(own, str(out / OWN_WEIGHTS), metadata={"digest": _state_digest(state)})
        shutil.copy2(model_dir.parent / "trained.json", out / "trained.json")
    return dest


def import_trained(src: Path, work: Path, root: Path | None = None) -> list[Path]:
    """The models ``export_trained`` sent back, rebuilt from the work folder's readers and saved as model
    folders (``seed<s>/<variant>/model``, under ``root`` when given, else ``work``) beside their ``trained.json``;
    a digest that does not match (other readers, a damaged file) is refused with the file's name."""
    bundle = Bundle.read(work)
    configs = variants(work / "note_reader", bundle.ct_reader_path(work))
    done = []
    for f in sorted(src.glob(f"seed*/*/{OWN_WEIGHTS}")):
        name, seed_dir = f.parent.name, f.parent.parent.name
        if name not in configs:
            raise WorkbenchError(f"{f}: {name!r} is not a variant of bench model")
        with safe_open(str(f), framework="pt") as g:
            digest = (g.metadata() or {}).get("digest")
        model = build_model(configs[name])
        state = {**model.state_dict(), **load_file(str(f))}
        if _state_digest(state) != digest:
            raise WorkbenchError(f"{f}: the rebuilt model differs from the one trained (other readers in {work}?)")
        model.load_state_dict(state)
        out = (root or work) / seed_dir / name
        save_model(model, out / "model")
        shutil.copy2(f.parent / "trained.json", out / "trained.json")
        done.append(out)
    return done


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def train_seeds(work: Path, seeds: list[int], *, device: str = "cpu", progress: bool = True,
                only: list[str] | None = None) -> dict[int, dict[str, dict[str, Any]]]:
    """Every variant (or those named in ``only``) for every seed in ``seeds``; resumes at what is missing."""
    bundle = Bundle.read(work)
    data, evals = load_inputs(work, bundle.eval_name)
    configs = {k: v for k, v in variants(work / "note_reader", bundle.ct_reader_path(work)).items()
               if only is None or k in only}
    unscored = [work / f"seed{s}" / k / f"eval-{bundle.eval_name}.json" for s in seeds for k in configs]
    if any(not f.exists() for f in unscored):  # scoring ahead: read the evaluation sets once for every model
        readers = build_model(variants(work / "note_reader", bundle.ct_reader_path(work))["fused"])
        evals = {k: with_reader_states(v, readers) for k, v in evals.items()}
    base = base_config(bundle, device, progress)
    return {s: {name: train_variant(name, cfg, work / f"seed{s}", data,
                                    replace(base, seed=s, **RECIPES[CHOSEN.get(name, "base")]), evals, bundle.eval_name)
                for name, cfg in configs.items()}
            for s in seeds}


def base_config(bundle: Bundle, device: str, progress: bool) -> TrainConfig:
    """The base recipe: ``TrainConfig``'s defaults with the bundle's schedule (a recipe of ``RECIPES`` changes it)."""
    return TrainConfig(epochs=bundle.epochs, patience=bundle.patience, progress=progress, device=device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workbench.bench.model_seeds",
                                 description="bench model's training half on a prepared work folder (bench model "
                                             "--prepare-only): train it here, or pack it for a GPU machine.")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (and, where the evaluation sets are, score) the variants for some seeds")
    t.add_argument("work", type=Path, help="the work folder, or a packed copy (holds bundle.json)")
    t.add_argument("--seeds", default="0-4", help="seeds as a range or list: 0-4, 0,2 (default 0-4)")
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument("--quiet", action="store_true")
    p = sub.add_parser("pack", help="copy the work folder's training inputs into DEST (about 24 kB a case)")
    p.add_argument("work", type=Path)
    p.add_argument("dest", type=Path)
    e = sub.add_parser("export", help="the trained models' own weights and trained.json into DEST, for the trip back")
    e.add_argument("work", type=Path)
    e.add_argument("dest", type=Path)
    i = sub.add_parser("import", help="models sent back by export, rebuilt into the work folder")
    i.add_argument("src", type=Path)
    i.add_argument("work", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.command == "pack":
            print(pack(a.work, a.dest))
            return 0
        if a.command == "export":
            print(export_trained(a.work, a.dest))
            return 0
        if a.command == "import":
            print(f"{len(import_trained(a.src, a.work))} models into {a.work}")
            return 0
        runs = train_seeds(a.work, parse_seeds(a.seeds), device=a.device, progress=not a.quiet)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for s, r in runs.items():
        print(f"seed {s}: " + ", ".join(f"{k} val AUROC {v['best_val_auroc']:.3f}" for k, v in r.items()))
    return 0


def parse_seeds(text: str) -> list[int]:
    """``0-4`` -> [0, 1, 2, 3, 4]; ``0,2`` -> [0, 2]."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise WorkbenchError(f"--seeds {text!r}: expected a range (0-4) or a list (0,2)") from None


if __name__ == "__main__":
    sys.exit(main())
