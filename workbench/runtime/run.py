"""A trained RUN folder, used: load its model and calibration, find its sites' cases, evaluate it.

RUN/
  model/              weights, config, tokenizer, MODEL_CARD.md (``workbench.models.save_model``)
  calibration.json    prior correction for the class weights + temperature fitted on val
  uncertainty.json    per-site conformal and Venn-Abers calibration (``workbench.runtime.run_uncertainty``)
  train_log.json      per-epoch history, throughput, sites and case counts
  metrics_val.json    val metrics after calibration
  training_curve.png  loss and val AUROC per epoch

Everything here is needed to use a trained model and nothing here trains one (``workbench.train.run`` does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.cache import PreprocessCache, default_cache_dir
from workbench.data.case import Case, load_cases
from workbench.errors import WorkbenchError
from workbench.metrics import bootstrap_auroc_ci, risk_metrics
from workbench.models.model import NoduleRiskModel, load_model
from workbench.runtime.calibration import Calibration
from workbench.runtime.encode import EncodedCases, drop_modality, encode_cases
from workbench.runtime.inference import predict_logits


def site_dirs_of(target: str | Path) -> list[Path]:
    """A site folder (has manifest.csv) -> [it]; a cohort folder -> its site folders, sorted."""
    p = Path(target)
    if (p / "manifest.csv").is_file():
        return [p]
    sites = sorted(d for d in p.iterdir() if d.is_dir() and (d / "manifest.csv").is_file()) if p.is_dir() else []
    if not sites:
        raise WorkbenchError(f"{p}: neither a site folder (manifest.csv) nor a cohort folder of sites")
    return sites


def cases_of(targets: Sequence[str | Path], splits: Sequence[str]) -> list[Case]:
    out: list[Case] = []
    for t in targets:
        for site in site_dirs_of(t):
            out += [c for c in load_cases(site) if c.split in splits]
    return out


def load_run(run: str | Path) -> tuple[NoduleRiskModel, Calibration]:
    """The RUN's model and its calibration."""
    run = Path(run)
    model = load_model(run / "model")
    cal = run / "calibration.json"
    return model, Calibration.from_dict(json.loads(cal.read_text())) if cal.exists() else Calibration()


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def _ci(y: np.ndarray, scores: np.ndarray) -> list[float | None]:
    """The AUROC's 95% case-bootstrap interval (one model: case sampling only), rounded; None where undefined."""
    lo, hi = bootstrap_auroc_ci(y, scores)
    return [None if np.isnan(v) else round(v, 4) for v in (lo, hi)]


def site_calibrations(run: str | Path) -> dict[str, Calibration]:
    """Each site's own calibration from the RUN's ``uncertainty.json`` when nothing there is pooled (a DP run:
    every node fitted its own), else {} (the RUN's one calibration applies to every case)."""
    path = Path(run) / "uncertainty.json"
    if not path.is_file():
        return {}
    d = json.loads(path.read_text(encoding="utf-8"))
    if d.get("pooled") is not None:
        return {}
    return {s: Calibration.from_dict(u["calibration"]) for s, u in d.get("sites", {}).items()}


def _calibrated(calibration: Calibration, per_site: dict[str, Calibration] | None, logits: np.ndarray,
                sites: list[str]) -> np.ndarray:
    p = calibration.apply(logits)
    where = np.array(sites)
    for site, cal in (per_site or {}).items():
        mask = where == site
        p[mask] = cal.apply(np.asarray(logits)[mask])
    return p


def evaluate_encoded(model: NoduleRiskModel, data: EncodedCases, calibration: Calibration, *,
                     ablations: bool = False, per_site: dict[str, Calibration] | None = None) -> dict[str, Any]:
    """Metrics of calibrated probabilities on ``data``, per site, and (with ``ablations``) each modality alone.
    ``per_site``: each site's own calibration (a DP run), else ``calibration`` for every case."""
    pred = predict_logits(model, data)
    p = _calibrated(calibration, per_site, pred["logits"], list(data.sites))
    y = data.labels
    sites = np.array(data.sites)
    out: dict[str, Any] = {
        "overall": {**_rounded(risk_metrics(y, p)), "auroc_ci95": _ci(y, pred["logits"])},
        "per_site": {s: _rounded(risk_metrics(y[sites == s], p[sites == s])) for s in sorted(set(data.sites))},
        "gate_mean": {m: round(float(pred["gate"][:, i].mean()), 4) for i, m in enumerate(model.modalities)},
        "calibration": calibration.to_dict() if not per_site else {s: c.to_dict() for s, c in per_site.items()},
    }
    if ablations:
        abl = {}
        for removed in model.modalities:
            if len(model.modalities) < 2:
                break
            sub = drop_modality(data, removed)
            ps = predict_logits(model, sub)
            kept = [m for m in model.modalities if m != removed][0]
            abl[f"without_{removed}"] = {
                **_rounded(risk_metrics(sub.labels, _calibrated(calibration, per_site, ps["logits"], list(sub.sites)))),
                "auroc_ci95": _ci(sub.labels, ps["logits"]),
                f"gate_{removed}_max": round(float(ps["gate"][:, model.modalities.index(removed)].max()), 6),
                f"gate_{kept}_mean": round(float(ps["gate"][:, model.modalities.index(kept)].mean()), 4),
            }
        out["ablations"] = abl
    return out


ALL_SPLITS = ("train", "val", "calib", "test")


def evaluate_run(run: str | Path, target: str | Path, *, ablations: bool = False, split: str = "test",
                 cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate the RUN on ``target``'s ``split`` (a cohort or a site folder). ``split="all"`` scores every case:
    for an evaluation cohort, generated with a seed no training or choice has seen (docs/architecture.md §9)."""
    model, calibration = load_run(run)
    assert model.tokenizer is not None
    cache = PreprocessCache(cache_dir if cache_dir is not None else default_cache_dir())
    splits = ALL_SPLITS if split == "all" else (split,)
    data = encode_cases(cases_of([target], splits), model.tokenizer, cache=cache, modalities=model.modalities,
                        progress=progress, desc=f"encode {split}", max_length=model.config.text.max_length)
    if len(data) == 0:
        raise WorkbenchError(f"{target}: no usable case in the {split!r} split")
    res = evaluate_encoded(model, data, calibration, ablations=ablations, per_site=site_calibrations(run))
    return {"run": str(run), "target": str(target), "split": split, "modalities": list(model.modalities),
            "refused": data.refused, **res}
