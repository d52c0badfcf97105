"""``workbench bench model``: the fused model against its ablations and the truth's ceilings, on ``test``.

Four models trained by the same trainer on the same pooled ``train`` split (early stopping on ``val``,
temperature on ``val``): ``fused`` (the modality-gated model), ``ct_only``, ``notes_only`` and ``late_fusion``
(concatenated modality summaries, no gate, no bias). Reference points from the truth on the same test cases:
``bayes`` (the true risk), ``brock_oracle`` (Brock on the true variables), and the ceilings of each modality.

Resumable (docs/architecture.md §9): the encoded splits, each trained model and its predictions are kept in a work folder
(``$WORKBENCH_CACHE/bench/model-<preset>-seed<seed>``); a killed run starts again from its finished parts.
``--device cuda`` runs ``model_speed`` instead: training speed and one-case latency on that device only.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.bench.common import cached_cohort, cohort_cache_root, envelope
from workbench.cohort.ceilings import ceilings
from workbench.cohort.generate import read_truth
from workbench.cohort.risk import brock_probability
from workbench.data.cache import PreprocessCache, default_cache_dir
from workbench.data.case import load_cases
from workbench.metrics import auroc, ece, paired_bootstrap_auroc_diff
from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.fusion import FusionConfig
from workbench.models.model import ModelConfig, build_model, load_model, save_model, trainable_parameters
from workbench.models.text_encoder import TextEncoderConfig
from workbench.runtime.calibration import Calibration, apply_temperature, fit_calibration
from workbench.runtime.encode import EncodedCases, drop_modality, encode_cases
from workbench.runtime.inference import predict_logits
from workbench.runtime.run import cases_of
from workbench.train.run import write_json
from workbench.train.trainer import TrainConfig, pos_weight_of, train_model


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


def shared_ct_reader(n_cases: int, progress: bool) -> Path:
    """The CT reader pretrained on ``n_cases`` corpus phantoms, built once per cache and shared by benchmarks."""
    from workbench.cohort.ct_corpus import write_ct_corpus
    from workbench.data.corpus import phantom_inputs
    from workbench.train.pretrain_ct import CTReaderConfig, build_ct_reader

    root = cohort_cache_root().parent
    return build_ct_reader(root / "ct_reader" / f"n{n_cases}",
                           lambda: write_ct_corpus(n_cases, root / "ct_corpus", phantom_inputs, progress=progress),
                           CTReaderConfig(n_cases=n_cases, progress=progress))


def _reader(work: Path, n_notes: int, progress: bool) -> Path:
    """The note reader, pretrained once on the separate synthetic note corpus (no cohort note, no label)."""
    from workbench.cohort.note_corpus import write_note_corpus
    from workbench.train.pretrain_text import ReaderConfig, build_note_reader, fresh_note_model

    out = work / "note_reader"
    if (out / "config.json").exists():
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
                        progress=progress, desc=f"encode {split}")
    data.save(f)
    return data


def _variant(name: str, config: ModelConfig, work: Path, data: dict[str, EncodedCases],
             train_config: TrainConfig) -> dict[str, Any]:
    """Train (or reload) one variant; its val/test logits and training figures, kept on disk."""
    d = work / name
    preds = d / "predictions.json"
    if preds.exists():
        return json.loads(preds.read_text())
    model = build_model(config)
    result = train_model(model, data["train"], data["val"], train_config, d / ".checkpoint")
    save_model(model, d / "model")
    val = predict_logits(model, data["val"])
    test = predict_logits(model, data["test"])
    out = {
        "calibration": fit_calibration(val["logits"], data["val"].labels,
                                       pos_weight_of(data["train"].labels)).to_dict(),
        "val_logits": val["logits"].tolist(),
        "test_logits": test["logits"].tolist(),
        "test_gate": test["gate"].tolist(),
        "trainable_params": trainable_parameters(model),
        "train_samples_per_s": result.samples_per_s,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_val_auroc": result.best_val_auroc,
        "train_seconds": result.seconds,
    }
    if len(model.modalities) == 2:
        for removed in model.modalities:
            sub = drop_modality(data["test"], removed)
            p = predict_logits(model, sub)
            out[f"without_{removed}"] = {"case_ids": sub.case_ids, "logits": p["logits"].tolist(),
                                         "gate": p["gate"].tolist()}
    write_json(preds, out)
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
                    epochs: int | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    preset = "small" if quick else "full"
    cohort_dir = Path(cohort) if cohort else cached_cohort(preset, seed, progress=progress)
    work = cohort_cache_root().parent / "bench" / f"model-{cohort_dir.name if cohort else f'{preset}-seed{seed}'}"
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = build_model(ModelConfig(modalities=("notes",))).tokenizer
    data = {s: _encoded(work, cohort_dir, s, tokenizer, progress) for s in ("train", "val", "test")}
    reader = _reader(work, 2000 if quick else 6000, progress)
    ct_reader = shared_ct_reader(400 if quick else 1500, progress)
    train_config = TrainConfig(epochs=epochs or (20 if quick else 40), patience=6 if quick else 10, progress=progress,
                               seed=seed)
    runs = {name: _variant(name, cfg, work, data, train_config) for name, cfg in variants(reader, ct_reader).items()}

    test = data["test"]
    y = test.labels
    logits = {k: np.asarray(v["test_logits"]) for k, v in runs.items()}
    truth = {t.case_id: t for t in read_truth(cohort_dir)}
    test_truth = [truth[c] for c in test.case_ids]
    ref = ceilings([t for t in truth.values() if t.split == "train"] + test_truth)
    gain, ci = paired_bootstrap_auroc_diff(y, logits["fused"], logits["ct_only"], seed=seed)
    fused = runs["fused"]
    calibration = Calibration.from_dict(fused["calibration"])
    p_fused = calibration.apply(logits["fused"])
    result: dict[str, Any] = {
        "auroc": {
            "fused": auroc(y, logits["fused"]),
            "ct_only": auroc(y, logits["ct_only"]),
            "notes_only": auroc(y, logits["notes_only"]),
            "late_fusion": auroc(y, logits["late_fusion"]),
            "brock_oracle": auroc(y, np.array([brock_probability(t) for t in test_truth])),
            "bayes": auroc(y, np.array([t.risk for t in test_truth])),
            "ct_only_ceiling": ref["ct_only_ceiling"],
            "notes_only_ceiling": ref["notes_only_ceiling"],
        },
        "fusion_gain": {"value": gain, "ci95": list(ci)},
        "ece": ece(y, p_fused),
        "ece_uncalibrated": ece(y, apply_temperature(logits["fused"], 1.0)),
        "ece_true_risk": ece(y, np.array([t.risk for t in test_truth])),  # the floor a perfect model meets on n_test
        "calibration": calibration.to_dict(),
        "n_test": len(test),
        "n_train": len(data["train"]),
        "trainable_params": fused["trainable_params"],
        "train_samples_per_s": fused["train_samples_per_s"],
    }
    result.update(_missing_modality(fused, test))
    result["gate_by_evidence"] = _gate_by_evidence(np.asarray(fused["test_gate"]), test, test_truth)
    result["variants"] = {k: {kk: v[kk] for kk in ("trainable_params", "train_samples_per_s", "best_epoch", "epochs_run",
                                                    "best_val_auroc", "train_seconds")}
                          for k, v in runs.items()}
    cases = {c.case_id: c for site in sorted({s for s in test.sites}) for c in load_cases(cohort_dir / site)}
    result.update(_latency_ms(work / "fused" / "model", [cases[c] for c in test.case_ids], calibration))
    result["ct_reader"] = json.loads((ct_reader / "ct_reader.json").read_text())["report"]
    result["work_dir"] = str(work)
    result.update(envelope(preset if not cohort else str(cohort), time.perf_counter() - start))
    return result


def _missing_modality(fused: dict[str, Any], test: EncodedCases) -> dict[str, Any]:
    out: dict[str, Any] = {}
    labels = dict(zip(test.case_ids, test.labels.tolist(), strict=True))
    for removed in ("notes", "ct"):
        r = fused[f"without_{removed}"]
        y = np.array([labels[c] for c in r["case_ids"]])
        gate = np.asarray(r["gate"])
        col = 0 if removed == "ct" else 1
        out[f"auroc_without_{removed}"] = auroc(y, np.asarray(r["logits"]))
        out[f"gate_{removed}_max_when_removed"] = float(gate[:, col].max())
    return out


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
