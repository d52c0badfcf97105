"""``workbench bench shipped``: what the shipped readers read, measured on phantoms and notes they never saw.

The shipped readers (``workbench/models/pretrained/``, see ``workbench.models.shipped``) keep only their encoders:
the fact heads they were taught with are dropped. So the held-out figures are those of a linear probe on the
frozen features, fitted and scored by 5-fold cross-validation on a fresh corpus drawn with a seed no corpus, cohort
or sweep uses (``HELD_OUT_*_SEED``): if the features carry the facts, a linear read-out finds them. A test runs
the same measurement small (``tests/models/test_shipped.py``) and checks it against the card's figures.

Figures: CT: diameter R^2 (log mm), solid-vs-subsolid and spiculation AUROC; notes: ever-smoker, prior cancer
and family history AUROC, age R^2.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.bench.common import envelope
from workbench.metrics import auroc, fit_logistic, predict_logistic
from workbench.models.shipped import shipped, shipped_bytes

HELD_OUT_CT_SEED = 77_177  # beside the CT reader's corpus seed (77 077): phantoms it never saw
HELD_OUT_NOTE_SEED = 90_310  # beside the note corpora's seeds (90 210, 90 211): notes neither model read
FOLDS = 5


def _folds(n: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(0).permutation(n), FOLDS)


def _standard(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    return (x - mu) / sd


def probe_r2(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> float:
    """Cross-validated R^2 of a ridge read-out of ``y`` from ``x``."""
    pred = np.zeros_like(y, dtype=float)
    for test in _folds(len(y)):
        train = np.setdiff1d(np.arange(len(y)), test)
        xs = _standard(x, train)
        a = np.c_[xs[train], np.ones(len(train))]
        w = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ y[train])
        pred[test] = np.c_[xs[test], np.ones(len(test))] @ w
    return float(1 - ((pred - y) ** 2).mean() / y.var())


def probe_auroc(x: np.ndarray, y: np.ndarray) -> float:
    """Cross-validated AUROC of a logistic read-out of the binary ``y`` from ``x``."""
    score = np.zeros(len(y))
    for test in _folds(len(y)):
        train = np.setdiff1d(np.arange(len(y)), test)
        xs = _standard(x, train)
        w = fit_logistic(xs[train], y[train], l2=1e-1)
        score[test] = predict_logistic(w, xs[test])
    return auroc(y, score)


def ct_figures(n: int, work: Path, *, progress: bool = False) -> dict[str, float]:
    from workbench.cohort.ct_corpus import write_ct_corpus
    from workbench.data.corpus import load_ct_corpus, phantom_inputs
    from workbench.models.ct_encoder import CTEncoder, CTEncoderConfig

    corpus = load_ct_corpus(write_ct_corpus(n, work, phantom_inputs, seed=HELD_OUT_CT_SEED, progress=progress))
    enc = CTEncoder(CTEncoderConfig(path=str(shipped("ct_reader")), freeze=True), d_model=64).eval()
    with torch.no_grad():
        p, c = enc.features(corpus.ct_patch.float(), corpus.ct_context.float())
        x = enc.finding_vector(p, c, corpus.ct_position).numpy()
    facts = corpus.facts
    solid = corpus.classes["nodule_type"].index("solid")
    return {"n": n, "diameter_r2": probe_r2(x, facts["log_diameter"].astype(float)),
            "solid_auroc": probe_auroc(x, (facts["nodule_type"] == solid).astype(float)),
            "spiculated_auroc": probe_auroc(x, facts["spiculated"].astype(float))}


def note_figures(n: int, work: Path) -> dict[str, float]:
    from workbench.cohort.note_corpus import write_note_corpus
    from workbench.data.corpus import load_note_corpus
    from workbench.models.model import ModelConfig, build_model
    from workbench.models.text_encoder import TextEncoderConfig
    from workbench.train.pretrain_text import tokenized_notes

    corpus = load_note_corpus(write_note_corpus(n, work, seed=HELD_OUT_NOTE_SEED))
    reader = shipped("note_reader")
    model = build_model(ModelConfig(modalities=("notes",), text=TextEncoderConfig(path=str(reader), freeze=True),
                                    tokenizer_path=str(reader))).eval()
    assert model.text_encoder is not None
    ids, mask, values = tokenized_notes(corpus.texts, model.tokenizer, model.config.text.max_length)
    rows = []
    with torch.no_grad():
        for s in range(0, len(ids), 64):
            m = mask[s:s + 64]
            h = model.text_encoder.hidden_states(ids[s:s + 64], m, values[s:s + 64])
            rows.append(((h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)).numpy())
    x = np.concatenate(rows)
    f = corpus.facts
    never = corpus.classes["smoking"].index("never")
    return {"n": n, "ever_smoker_auroc": probe_auroc(x, (f["smoking"] != never).astype(float)),
            "prior_cancer_auroc": probe_auroc(x, f["prior_cancer"].astype(float)),
            "family_history_auroc": probe_auroc(x, f["family_history"].astype(float)),
            "age_r2": probe_r2(x, f["age"].astype(float))}


def run_shipped_bench(*, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Both readers' held-out figures (300 phantoms, 600 notes; quick: 80 and 200) and the shipped bytes."""
    start = time.perf_counter()
    n_ct, n_notes = (80, 200) if quick else (300, 600)
    with tempfile.TemporaryDirectory(prefix="shipped-bench-") as tmp:
        result: dict[str, Any] = {"ct_reader": ct_figures(n_ct, Path(tmp) / "ct", progress=progress),
                                  "note_reader": note_figures(n_notes, Path(tmp) / "notes")}
    result["held_out_seeds"] = {"ct": HELD_OUT_CT_SEED, "notes": HELD_OUT_NOTE_SEED}
    result["shipped_bytes"] = shipped_bytes()
    result.update(envelope("shipped" + ("-quick" if quick else ""), time.perf_counter() - start))
    return result


__all__ = ["HELD_OUT_CT_SEED", "HELD_OUT_NOTE_SEED", "ct_figures", "note_figures", "run_shipped_bench"]
