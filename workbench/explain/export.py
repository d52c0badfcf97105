"""``workbench explain RUN CASE_ID --site SITE_DIR --out DIR``: one case's explanation as files a person opens.

DIR gets ``explanation.npz`` (the CT attribution, the patch it explains, the word attributions), ``ct_slices.png``
(the three orthogonal slices through the most attributed voxel, attribution over the patch), ``note.png`` and
``note.html`` (the de-identified note the model read, words shaded by attribution: red raised the risk, blue
lowered it), ``gate.png`` (how much each modality counted) and ``explanation.json`` (risk, gate, rollout, top
words, what was not explained and why; when the RUN has been calibrated (``workbench calibrate``), the case's
90% prediction set, Venn-Abers interval, refer flag with its reasons, and the five most similar training cases
of the same site with their de-identified notes). Written into a temporary sibling and renamed: a killed run leaves no
half-written folder. The note text is the de-identified one; no identifier of the case other than its id leaves.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.explain.attributions import Explanation, explain


def explain_case(run: str | Path, case_id: str, site_dir: str | Path, out_dir: str | Path,
                 steps: int = 32) -> dict[str, Any]:
    from workbench.data.cache import PreprocessCache, default_cache_dir
    from workbench.runtime.predict import predict
    from workbench.runtime.run import load_run

    site = Path(site_dir)
    case = find_case(site, case_id)
    model, calibration = load_run(run)
    pred = predict(model, case, calibration=calibration, cache=PreprocessCache(default_cache_dir()))
    exp = explain(model, pred.inputs, case_id, steps=steps)
    exp.notes = [*pred.notes, *exp.notes]
    assessment, similar = case_uncertainty(Path(run), site.name, case_id, model, pred, exp.notes)
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    patch = pred.inputs["ct_patch"][0, 0].float().numpy() if exp.ct_attribution is not None else None
    np.savez_compressed(tmp / "explanation.npz",
                        **({"ct_attribution": exp.ct_attribution, "ct_patch": patch} if patch is not None else {}),
                        **({"word_attribution": exp.word_attribution} if exp.word_attribution is not None else {}))
    if patch is not None:
        _ct_png(patch, exp.ct_attribution, tmp / "ct_slices.png")  # type: ignore[arg-type]
    if exp.word_attribution is not None:
        _note_files(exp, tmp)
    _gate_png(exp, tmp / "gate.png")
    summary = {**exp.summary(), "probability": pred.probability, "uncertainty": assessment,
               "similar_cases": similar, "run": str(run), "steps": steps,
               "files": sorted(p.name for p in tmp.iterdir()) + ["explanation.json"]}
    (tmp / "explanation.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return summary


def find_case(site_dir: str | Path, case_id: str) -> Any:
    """The site's case ``case_id``; a missing site manifest or an unknown case is refused naming the file."""
    from workbench.data.case import load_cases

    site = Path(site_dir)
    if not (site / "manifest.csv").is_file():
        raise WorkbenchError(f"{site}: not a site folder (no manifest.csv)")
    cases = {c.case_id: c for c in load_cases(site)}
    if case_id not in cases:
        raise WorkbenchError(f"case {case_id!r}: not in {site / 'manifest.csv'} ({len(cases)} cases there)")
    return cases[case_id]


def highlighted_words(words: list[str], scores: Any) -> str:
    """The words as HTML spans shaded by attribution: red raised the risk, blue lowered it (the strongest word
    fully coloured); each word escaped, its score in the tooltip."""
    a = np.asarray(scores, dtype=float)
    lim = (float(np.abs(a).max()) if len(a) else 0.0) or 1.0
    spans = []
    for w, v in zip(words, a, strict=True):
        s = int(255 * (1 - min(1.0, abs(v) / lim)))
        bg = f"rgb(255,{s},{s})" if v > 0 else f"rgb({s},{s},255)"
        spans.append(f'<span style="background:{bg};padding:0 2px" title="{v:+.3f}">{html.escape(w)}</span>')
    return " ".join(spans)


def case_uncertainty(run: Path, site: str, case_id: str, model: Any, pred: Any,
                 notes: list[str]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The case's set, interval and refer flag from its site's calibrators, and its site's most similar training
    cases (the site's own index only); (None, []) with a note when the RUN has not been calibrated."""
    import torch

    from workbench.runtime.run_uncertainty import UNCERTAINTY_FILE, RunUncertainty, site_index

    if not (run / UNCERTAINTY_FILE).is_file():
        notes.append(f"no uncertainty for this RUN: run `workbench calibrate {run} COHORT` for sets, intervals, "
                     "the refer flag and similar cases")
        return None, []
    unc = RunUncertainty.load(run)
    with torch.no_grad():
        fused = model.forward_batch({k: v for k, v in pred.inputs.items() if k != "label"}).fused.float().numpy()
    index = site_index(run, site)
    a = unc.assess(site, np.array([pred.logit]), fused, index)[0]
    similar = index.similar(fused[0], k=5, exclude=case_id) if index is not None else []
    if index is None:
        notes.append(f"no similar-case index for site {site!r} in this RUN (indexes never serve another site)")
    return a.to_dict(), similar


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ct_png(patch: np.ndarray, attr: np.ndarray, path: Path) -> None:
    plt = _plt()
    z, y, x = np.unravel_index(int(np.abs(attr).argmax()), attr.shape)
    views = [("axial", patch[z], attr[z]), ("coronal", patch[:, y], attr[:, y]), ("sagittal", patch[:, :, x], attr[:, :, x])]
    lim = float(np.abs(attr).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, (name, img, a) in zip(axes, views, strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.imshow(a, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.5)
        ax.set_title(f"{name} through the peak")
        ax.axis("off")
    fig.suptitle("Integrated Gradients on the nodule patch (red raises the risk, blue lowers it; baseline: air)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _note_files(exp: Explanation, out: Path) -> None:
    a = exp.word_attribution
    assert a is not None
    lim = float(np.abs(a).max()) or 1.0
    spans = highlighted_words(exp.words, a)
    (out / "note.html").write_text(f"<!doctype html><meta charset=utf-8><title>note attribution {html.escape(exp.case_id)}"
                                   f"</title><p style='font-family:sans-serif;line-height:1.8'>{spans}</p>\n",
                                   encoding="utf-8")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.axis("off")
    x, y, line = 0.0, 1.0, 0.07
    for w, v in zip(exp.words, a, strict=True):
        width = 0.012 * (len(w) + 1)
        if x + width > 1.0:
            x, y = 0.0, y - line
        s = 1 - min(1.0, abs(float(v)) / lim)
        ax.text(x, y, w, fontsize=8, va="top", transform=ax.transAxes,
                bbox={"facecolor": (1, s, s) if v > 0 else (s, s, 1), "edgecolor": "none", "pad": 1})
        x += width
    ax.set_title("the de-identified note as the model read it (red raises the risk, blue lowers it)", fontsize=9)
    fig.savefig(out / "note.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _gate_png(exp: Explanation, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 1.8))
    names = list(exp.gate)
    ax.barh(names, [exp.gate[n] for n in names], color=["#4c72b0", "#dd8452"][: len(names)])
    ax.set_xlim(0, 1)
    ax.set_xlabel("gate weight (how much each modality counted)")
    for i, n in enumerate(names):
        ax.text(min(exp.gate[n] + 0.02, 0.85), i, f"{exp.gate[n]:.2f}" + ("" if exp.present.get(n) else " (absent)"),
                va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["case_uncertainty", "explain_case", "find_case", "highlighted_words"]
