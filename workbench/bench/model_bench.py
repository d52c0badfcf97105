"""``workbench bench model``: the fused model against its ablations and the truth's ceilings, on an evaluation cohort.

Four models trained by the same trainer on the training cohort's pooled ``train`` split (early stopping on its
``val``, temperature on its ``val``): ``fused`` (the modality-gated model), ``ct_only``, ``notes_only`` and
``late_fusion`` (concatenated modality summaries, no gate, no bias). Reference points from the truth on the same
cases: ``bayes`` (the true risk), ``brock_oracle`` (Brock on the true variables), and the ceilings of each
modality (a logistic fit on the training cohort's train split to the true variables that modality carries).

The protocol (docs/architecture.md §9, "How the figures are made"): every choice is made on the training
cohort's ``val``; the figures are scored once on **every case of the evaluation cohort** (the same preset, sites
and truth from ``--eval-seed``, a seed no training run or choice has seen), never on the training cohort's test
split. Each variant is trained once per training seed (``--seeds N``, default 5: model init, data order,
modality dropout and flips follow the seed); every figure is the mean over the seeds with a 95% interval from a
hierarchical bootstrap over seeds and cases (``workbench.bench.seeds``), written beside it as ``<key>_ci95``.
``auroc_marked_centre``: the fused model with each CT's centre moved like a reader's mark
(``workbench.bench.marked_centre``) instead of the generator's exact centre.

Resumable (docs/architecture.md §9): the encoded splits, the encoded evaluation cohort, and per seed each
trained model and its predictions are kept in a work folder (``$WORKBENCH_CACHE/bench/model-<preset>-seed<seed>``,
``-shifted`` for the shifted truth; ``seed<s>/<variant>/``); a killed run starts again at the missing seeds.
``--device cuda`` runs ``model_speed`` instead: training speed and one-case latency on that device only.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.bench.common import cohort_cache_root, envelope, training_cohort, with_evaluation
from workbench.bench.marked_centre import MarkError, mark_offset, reader_marks
from workbench.bench.model_seeds import CHOSEN, RECIPES, Bundle, train_seeds
from workbench.bench.seeds import BootstrapConfig, Figure, paired, put, seed_count
from workbench.cohort.ceilings import ct_features, note_features, truth_of
from workbench.cohort.generate import read_truth
from workbench.cohort.risk import brock_probability
from workbench.cohort.spec import PatientTruth
from workbench.data.cache import PreprocessCache, default_cache_dir
from workbench.data.case import SPLITS
from workbench.errors import WorkbenchError
from workbench.metrics import auroc, ece, fit_logistic, predict_logistic
from workbench.models.model import ModelConfig, build_model, load_model
from workbench.runtime.calibration import Calibration, apply_temperature
from workbench.runtime.encode import EncodedCases, encode_cases
from workbench.runtime.run import cases_of

SEEDS = 5  # training seeds of a full run (issue 16: at least 5)
QUICK_SEEDS = 2  # --quick: the fewest that give an interval over seeds

# The corpus sizes the shipped readers were pretrained with (models/pretrained/CARD.md: ``pretrain-ct --cases 1500
# --epochs 20``, corpus seed 77077; ``pretrain-notes --notes 6000``, corpus seed 90210): the very recipe the full
# benchmarks ask for. A full run uses them instead of pretraining the same recipe again (about 25 min on two cores);
# any other size (``--quick``) is pretrained and cached as before.
SHIPPED_CT_CASES = 1500
SHIPPED_NOTES = 6000


def shared_ct_reader(n_cases: int, progress: bool) -> Path:
    """The CT reader pretrained on ``n_cases`` corpus phantoms: the shipped one for its recipe, else built once per
    cache and shared by benchmarks."""
    from workbench.cohort.ct_corpus import write_ct_corpus
    from workbench.data.corpus import phantom_inputs
    from workbench.models.shipped import shipped
    from workbench.train.pretrain_ct import CTReaderConfig, build_ct_reader

    if n_cases == SHIPPED_CT_CASES:
        return shipped("ct_reader")
    root = cohort_cache_root().parent
    return build_ct_reader(root / "ct_reader" / f"n{n_cases}",
                           lambda: write_ct_corpus(n_cases, root / "ct_corpus", phantom_inputs, progress=progress),
                           CTReaderConfig(n_cases=n_cases, progress=progress))


def _reader(work: Path, n_notes: int, progress: bool) -> Path:
    """The note reader, pretrained on the separate synthetic note corpus (no cohort note, no label), kept in the
    work folder: the shipped one for its recipe, else pretrained once."""
    from workbench.cohort.note_corpus import write_note_corpus
    from workbench.models.shipped import shipped
    from workbench.train.pretrain_text import ReaderConfig, build_note_reader, fresh_note_model

    out = work / "note_reader"
    if (out / "config.json").exists():
        return out
    if n_notes == SHIPPED_NOTES:
        shutil.copytree(shipped("note_reader"), out)
        return out
    corpus = write_note_corpus(n_notes, cohort_cache_root().parent / "note_corpus")
    config = ReaderConfig(n_notes=n_notes, progress=progress)
    build_note_reader(fresh_note_model(config), out, corpus, config)
    return out


def _encoded(work: Path, cohort: Path, split: str, tokenizer: Any, progress: bool) -> EncodedCases:
    f = work / f"encoded_{split}.pt"
    if f.exists():
        return EncodedCases.load(f)
    data = encode_cases(cases_of([cohort], [split]), tokenizer, cache=PreprocessCache(default_cache_dir()),
                        progress=progress, desc=f"encode {split}", workers=os.cpu_count() or 1)
    data.save(f)
    return data


def evaluation_sets(work: Path, eval_dir: Path, tokenizer: Any, diameters_mm: dict[str, float],
                    progress: bool, *, marked: bool = True) -> dict[str, EncodedCases]:
    """Every case of the evaluation cohort, encoded once (kept in ``work/eval-<cohort>/``): ``exact`` with the
    manifest's centres, and unless ``marked`` is False ``marked`` with reader-like marks (``marked_centre``;
    ``diameters_mm`` gives each case's radius). Shared with ``bench federated``."""
    folder = work / f"eval-{eval_dir.name}"
    cases = cases_of([eval_dir], SPLITS)
    out = {}
    kinds = (("exact", "encode evaluation cohort"), ("marked", "encode marked centres"))
    for name, desc in kinds if marked else kinds[:1]:
        f = folder / ("encoded.pt" if name == "exact" else "encoded_marked.pt")
        if f.exists():
            out[name] = EncodedCases.load(f)
            continue
        # marked centres bypass the preprocessing cache: a second copy of every patch would only fill it
        data = encode_cases(cases if name == "exact" else reader_marks(cases, diameters_mm), tokenizer,
                            cache=PreprocessCache(default_cache_dir()) if name == "exact" else None,
                            progress=progress, desc=desc, workers=os.cpu_count() or 1)
        folder.mkdir(parents=True, exist_ok=True)
        data.save(f)
        out[name] = data
    return out


def _latency_ms(model_dir: Path, cases: list[Any], calibration: Calibration, n: int = 25) -> dict[str, float]:
    """Median one-case ``workbench.predict`` of ingested cases (preprocessing cache warm: a first, untimed pass
    plays ``workbench ingest``), notes de-identified and tokenized, CT read from the cache, forward pass."""
    from workbench.runtime.predict import predict

    model = load_model(model_dir)
    cache = PreprocessCache(default_cache_dir())
    times, forward = [], []
    for case in cases[: n + 3]:
        predict(model, case, calibration=calibration, cache=cache)  # ingestion's pass
    for case in cases[: n + 3]:
        t0 = time.perf_counter()
        pred = predict(model, case, calibration=calibration, cache=cache)
        times.append((time.perf_counter() - t0) * 1000)
        t1 = time.perf_counter()
        with torch.no_grad():
            model.forward_batch(pred.inputs)
        forward.append((time.perf_counter() - t1) * 1000)
    return {"latency_ms_cpu": statistics.median(times[3:]), "latency_ms_cpu_forward_only": statistics.median(forward[3:])}


def run_model_bench(*, quick: bool = False, cohort: str | Path | None = None, seed: int = 0, progress: bool = True,
                    epochs: int | None = None, seeds: int | None = None, eval_seed: int | None = None,
                    eval_cohort: str | Path | None = None, truth: str = "brock", train_device: str = "cpu",
                    prepare_only: bool = False) -> dict[str, Any]:
    """The benchmark (module docstring). ``seed``: the training cohort's; ``seeds``: how many training seeds
    (0..N-1; default ``SEEDS``, ``QUICK_SEEDS`` with ``quick``); ``eval_seed`` / ``eval_cohort``: the cohort
    the figures are scored on; ``train_device``: where the variants train (``cuda`` on a GPU machine that also
    holds the cohorts); ``prepare_only``: stop once the work folder is ready for ``model_seeds`` (cohorts,
    readers, encoded sets), so that training can run on another machine."""
    start = time.perf_counter()
    n_seeds = seed_count(seeds, quick=quick, full=SEEDS, quick_default=QUICK_SEEDS)
    cohorts = with_evaluation(training_cohort(quick=quick, cohort=cohort, seed=seed, truth=truth, progress=progress),
                              eval_seed=eval_seed, eval_cohort=eval_cohort, progress=progress)
    assert cohorts.eval is not None
    work = cohort_cache_root().parent / "bench" / f"model-{cohorts.tag}"
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = build_model(ModelConfig(modalities=("notes",))).tokenizer
    data = {s: _encoded(work, cohorts.train, s, tokenizer, progress) for s in ("train", "val")}
    train_all, eval_all = read_truth(cohorts.train), read_truth(cohorts.eval)
    for name, records in (("training", train_all), ("evaluation", eval_all)):
        if truth_of(records) != cohorts.truth:  # a --cohort / --eval-cohort folder of another truth
            raise WorkbenchError(f"the {name} cohort follows the {truth_of(records)} truth, not --truth {cohorts.truth}")
    train_truth = [t for t in train_all if t.split == "train"]
    eval_truth = {t.case_id: t for t in eval_all}
    evals = evaluation_sets(work, cohorts.eval, tokenizer, {c: t.diameter_mm for c, t in eval_truth.items()}, progress)
    _reader(work, 2000 if quick else 6000, progress)  # work/note_reader
    ct_reader = shared_ct_reader(400 if quick else 1500, progress)
    if not (work / "ct_reader" / "ct_reader.json").exists():  # the work folder carries its readers (model_seeds)
        shutil.copytree(ct_reader, work / "ct_reader", dirs_exist_ok=True)
    Bundle(eval_name=cohorts.eval.name, epochs=epochs or (20 if quick else 40), patience=6 if quick else 10).write(work)
    if prepare_only:
        return {"work_dir": str(work), "prepared": True, "seeds": list(range(n_seeds)),
                "next": f"python -m workbench.bench.model_seeds pack {work} .pack/NAME; on a GPU machine "
                        "bash bench/model_seeds_gpu.sh (or: model_seeds train .pack/NAME --device cuda, then export); "
                        f"python -m workbench.bench.model_seeds import back/NAME {work}; run this command again "
                        "without --prepare-only (bench/README.md)"}
    runs = train_seeds(work, list(range(n_seeds)), device=train_device, progress=progress)
    configs = list(runs[0])

    exact = evals["exact"]
    truths = [eval_truth[c] for c in exact.case_ids]
    result = _figures(runs, exact, truths, _references(train_truth, truths))
    result.update(_marked_centre(runs, exact, evals["marked"], eval_truth))
    fused0 = runs[0]["fused"]
    result["calibration"] = {k: float(np.mean([r["fused"]["calibration"][k] for r in runs.values()]))
                             if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                             for k, v in fused0["calibration"].items()}  # mean of each seed's val fit
    result["calibration_by_seed"] = [r["fused"]["calibration"] for r in runs.values()]
    result.update({
        "n_test": len(exact),  # the scored cases: every case of the evaluation cohort (= n_eval)
        "n_eval": len(exact),
        "n_eval_refused": len(exact.refused),
        "n_train": len(data["train"]),
        "eval_seed": cohorts.eval_seed,
        "eval_cohort": cohorts.eval.name,
        "training_cohort": cohorts.train.name,
        "truth": cohorts.truth,
        "seeds": list(runs),
        "bootstrap": {**asdict(BootstrapConfig()), "method": "hierarchical: seeds and cases with replacement "
                      "(the same cases for every seed in a replicate), percentile interval"},
        "trainable_params": fused0["trainable_params"],
        "train_samples_per_s": float(np.mean([r["fused"]["train_samples_per_s"] for r in runs.values()])),
    })
    fields = ("trainable_params", "train_samples_per_s", "best_epoch", "epochs_run", "best_val_auroc", "train_seconds")
    result["variants"] = {k: {f: float(np.mean([r[k][f] for r in runs.values()])) for f in fields} for k in configs}
    result["train_recipes"] = {k: {"recipe": CHOSEN.get(k, "base"), "fields": RECIPES[CHOSEN.get(k, "base")],
                                   "chosen_on": "val, bench/results/recipe_sweep_val.jsonl (workbench.bench.recipe_sweep)"}
                               for k in configs}
    result["variants_by_seed"] = {k: [{f: r[k][f] for f in fields} for r in runs.values()] for k in configs}
    cases = {c.case_id: c for c in cases_of([cohorts.eval], SPLITS)}
    result.update(_latency_ms(work / "seed0" / "fused" / "model", [cases[c] for c in exact.case_ids],
                              Calibration.from_dict(fused0["calibration"])))
    result["ct_reader"] = json.loads((ct_reader / "ct_reader.json").read_text())["report"]
    result["readers"] = "shipped (models/pretrained/CARD.md)" if not quick else "pretrained for this run (--quick sizes)"
    result["train_device"] = sorted({r[k].get("train_device", "cpu") for r in runs.values() for k in r})
    result["work_dir"] = str(work)
    result.update(envelope(cohorts.label, time.perf_counter() - start))
    return result


def _references(train: list[PatientTruth], cases: list[PatientTruth]) -> dict[str, np.ndarray]:
    """The truth's scores of the evaluation cases: the true risk, Brock on the true variables, and each modality's
    ceiling (a logistic fit on the training cohort's train split to that modality's true variables;
    ``workbench.cohort.ceilings``)."""
    out = {"brock_oracle": np.array([brock_probability(t) for t in cases]), "bayes": np.array([t.risk for t in cases])}
    y_train = np.array([t.label for t in train])
    for key, feats in (("ct_only_ceiling", ct_features), ("notes_only_ceiling", note_features)):
        w = fit_logistic(np.array([feats(t) for t in train]), y_train)
        out[key] = predict_logistic(w, np.array([feats(t) for t in cases]))
    return out


def _figures(runs: dict[int, dict[str, dict[str, Any]]], exact: EncodedCases, truths: list[PatientTruth],
             refs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every figure as the mean over seeds with its ``_ci95`` sibling (``workbench.bench.seeds``)."""
    y = exact.labels
    seeds = list(runs)
    logits = {k: [np.asarray(runs[s][k]["logits"]) for s in seeds] for k in runs[seeds[0]]}
    out: dict[str, Any] = {}
    auroc_figs: dict[str, Figure] = {k: Figure(y, v) for k, v in logits.items()}
    auroc_figs.update({k: Figure(y, [v]) for k, v in refs.items()})  # the truth has no seed: cases only
    put(out, "auroc", auroc_figs)
    out["auroc_by_seed"] = {k: [auroc(y, v) for v in vs] for k, vs in logits.items()}
    out["fusion_gain"] = paired(Figure(y, logits["fused"], baseline=logits["ct_only"]))
    cals = [Calibration.from_dict(runs[s]["fused"]["calibration"]) for s in seeds]
    put(out, "ece", Figure(y, [c.apply(v) for c, v in zip(cals, logits["fused"], strict=True)], metric=ece))
    put(out, "ece_uncalibrated", Figure(y, [apply_temperature(v, 1.0) for v in logits["fused"]], metric=ece))
    put(out, "ece_true_risk", Figure(y, [refs["bayes"]], metric=ece))  # the floor a perfect model meets on n_eval
    sites = np.array(exact.sites)
    put(out, "per_site_auroc", {s: Figure(y[sites == s], [v[sites == s] for v in logits["fused"]])
                                for s in sorted(set(exact.sites))})
    # calibration per site: the stated risk (one pooled Platt fit on val per seed) beside the true risk's own ECE on
    # the same site's cases, the floor for that many cases (issue 16: within 0.03 of it at every site)
    probs = [c.apply(v) for c, v in zip(cals, logits["fused"], strict=True)]
    put(out, "ece_per_site", {s: Figure(y[sites == s], [p[sites == s] for p in probs], metric=ece)
                              for s in sorted(set(exact.sites))})
    put(out, "ece_true_risk_per_site", {s: Figure(y[sites == s], [refs["bayes"][sites == s]], metric=ece)
                                        for s in sorted(set(exact.sites))})
    out["ece_excess_per_site"] = {s: out["ece_per_site"][s] - out["ece_true_risk_per_site"][s]
                                  for s in out["ece_per_site"]}
    female = np.array([t.female for t in truths])
    put(out, "per_sex_auroc", {k: Figure(y[sel], [v[sel] for v in logits["fused"]])
                               for k, sel in (("female", female), ("male", ~female))})
    labels = dict(zip(exact.case_ids, y.tolist(), strict=True))
    for removed in ("notes", "ct"):
        rs = [runs[s]["fused"][f"without_{removed}"] for s in seeds]
        put(out, f"auroc_without_{removed}", Figure(np.array([labels[c] for c in rs[0]["case_ids"]]),
                                                    [np.asarray(r["logits"]) for r in rs]))
        col = 0 if removed == "ct" else 1
        out[f"gate_{removed}_max_when_removed"] = max(float(np.asarray(r["gate"])[:, col].max()) for r in rs)
    by_seed = [_gate_by_evidence(np.asarray(runs[s]["fused"]["gate"]), exact, truths) for s in seeds]
    out["gate_by_evidence"] = {k: {"n": by_seed[0][k]["n"],
                                   **{m: (float(np.mean([g[k][m] for g in by_seed])) if by_seed[0][k]["n"] else None)
                                      for m in ("ct", "notes")}}
                               for k in by_seed[0]}
    return out


def _marked_centre(runs: dict[int, dict[str, dict[str, Any]]], exact: EncodedCases, marked: EncodedCases,
                   truth: dict[str, PatientTruth]) -> dict[str, Any]:
    """The fused model's AUROC with reader-like marks, beside the exact-centre figure, and their paired difference
    on the same cases (``workbench.bench.marked_centre``)."""
    seeds = list(runs)
    rs = [runs[s]["fused"]["marked"] for s in seeds]
    labels = dict(zip(exact.case_ids, exact.labels.tolist(), strict=True))
    y = np.array([labels[c] for c in rs[0]["case_ids"]])
    out: dict[str, Any] = {}
    put(out, "auroc_marked_centre", Figure(y, [np.asarray(r["logits"]) for r in rs]))
    if rs[0]["case_ids"] == exact.case_ids:
        out["marked_minus_exact_centre"] = paired(Figure(y, [np.asarray(r["logits"]) for r in rs],
                                                         baseline=[np.asarray(runs[s]["fused"]["logits"]) for s in seeds]))
    error = MarkError()
    offsets = [mark_offset(c, t.diameter_mm, error) for c, t in truth.items() if t.has_ct]
    out["marked_centre"] = {**error.to_dict(), "n_marked": len(offsets),
                            "n_off_by_radius": sum(off for _, off in offsets),
                            "median_error_mm": float(np.median([np.linalg.norm(o) for o, _ in offsets])) if offsets else None,
                            "n_ct_lost": _ct_lost(exact, marked)}
    return out


def _ct_lost(exact: EncodedCases, marked: EncodedCases) -> int | None:
    """Cases whose CT was read at the exact centre but refused at the mark (a mark outside the volume)."""
    if marked.case_ids != exact.case_ids:
        return None
    return int((exact.tensors["modality_mask"][:, 0] & ~marked.tensors["modality_mask"][:, 0]).sum())


def _gate_by_evidence(gate: np.ndarray, test: EncodedCases, truths: list[Any]) -> dict[str, Any]:
    """Mean gate weights where the truth puts the signal in the note vs in the CT (cases with both)."""
    both = test.tensors["modality_mask"].all(1).numpy()
    note_heavy = np.array([(t.prior_ct in ("stable_2y", "growing") or t.prior_cancer) and t.diameter_mm < 10
                           and not t.spiculated for t in truths]) & both
    ct_heavy = np.array([t.diameter_mm >= 15 and t.spiculated and t.prior_ct not in ("stable_2y", "growing")
                         and not t.prior_cancer for t in truths]) & both
    out = {}
    for name, sel in (("note_heavy", note_heavy), ("ct_heavy", ct_heavy)):
        out[name] = {"n": int(sel.sum()), "ct": float(gate[sel, 0].mean()) if sel.any() else None,
                     "notes": float(gate[sel, 1].mean()) if sel.any() else None}
    return out


__all__ = ["run_model_bench"]
