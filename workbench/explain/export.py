"""``workbench explain RUN CASE_ID --site SITE_DIR --out DIR``: one case's explanation as files a person opens.

``write_explanation(explain_case(...), DIR)`` fills DIR with ``explanation.npz`` (the CT attribution, the patch it
explains, the word attributions), ``ct_slices.png`` (the three orthogonal slices through the most attributed
voxel, attribution over the patch), ``note.png`` and ``note.html`` (the de-identified note the model read, words
shaded by attribution: red raised the risk, blue lowered it), ``gate.png`` (how much each modality counted) and
``explanation.json`` (risk, gate, rollout, top words, what was not explained and why; when the RUN has been
calibrated (``workbench calibrate``), the case's 90% prediction set, risk interval, refer flag with its
reasons, and the five most similar training cases of the same site with their de-identified notes). The folder
is written whole through ``workbench.atomic``: a killed run leaves no half-written folder. The note text is the
de-identified one; no identifier of the case other than its id leaves.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_write
from workbench.explain.case import CaseExplanation
from workbench.explain.figures import case_figures

SUMMARY_FILE = "explanation.json"


def explanation_summary(ce: CaseExplanation, files: list[str]) -> dict[str, Any]:
    """What ``explanation.json`` holds (and ``workbench explain`` prints): the explanation's JSON-able part,
    the risk, the uncertainty, the similar cases, and the folder's ``files``."""
    return {**ce.explanation.summary(), "probability": ce.risk,
            "uncertainty": ce.assessment.to_dict() if ce.assessment is not None else None,
            "similar_cases": ce.similar, "run": str(ce.run), "steps": ce.steps,
            "files": sorted(files) + [SUMMARY_FILE]}


def write_explanation(ce: CaseExplanation, out_dir: str | Path) -> dict[str, Any]:
    """The explanation's files in ``out_dir`` (replaced whole); returns the summary written to explanation.json."""
    exp, patch = ce.explanation, ce.ct_patch
    with atomic_write(Path(out_dir)) as tmp:
        tmp.mkdir(parents=True)
        arrays: dict[str, np.ndarray] = {}
        if patch is not None and exp.ct_attribution is not None:
            arrays |= {"ct_attribution": exp.ct_attribution, "ct_patch": patch}
        if exp.word_attribution is not None:
            arrays["word_attribution"] = exp.word_attribution
        np.savez_compressed(tmp / "explanation.npz", **arrays)  # type: ignore[arg-type]
        for name, png in case_figures(ce).files().items():
            (tmp / name).write_bytes(png)
        if exp.word_attribution is not None:
            (tmp / "note.html").write_text(note_page(exp.case_id, exp.words, exp.word_attribution), encoding="utf-8")
        summary = explanation_summary(ce, [p.name for p in tmp.iterdir()])
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _shade(shown: str, v: float, lim: float) -> str:
    s = int(255 * (1 - min(1.0, abs(v) / lim)))
    bg = f"rgb(255,{s},{s})" if v > 0 else f"rgb({s},{s},255)"
    return f'<span style="background:{bg};padding:0 1px" title="{v:+.3f}">{html.escape(shown)}</span>'


def highlighted_words(words: list[str], scores: Any) -> str:
    """The words as HTML spans shaded by attribution: red raised the risk, blue lowered it (the strongest word
    fully coloured); each word escaped, its score in the tooltip."""
    a = np.asarray(scores, dtype=float)
    lim = (float(np.abs(a).max()) if len(a) else 0.0) or 1.0
    return " ".join(_shade(w, v, lim) for w, v in zip(words, a, strict=True))


def highlighted_text(text: str, words: list[str], scores: Any, *, max_gap: int = 400) -> str:
    """The de-identified note as written (case, punctuation and line breaks kept), each word the model read shaded
    by its attribution. The model's words are lowercased tokens in reading order; each is found in the text after
    the previous one (at most ``max_gap`` characters on), so text the tokenizer dropped stays unshaded and a word it
    cannot place is skipped rather than shaded in the wrong spot. Everything is escaped."""
    a = np.asarray(scores, dtype=float)
    lim = (float(np.abs(a).max()) if len(a) else 0.0) or 1.0
    low, out, cursor = text.lower(), [], 0
    for w, v in zip(words, a, strict=True):
        at = low.find(w.lower(), cursor, cursor + max_gap + len(w)) if w else -1
        if at < 0:
            continue
        out += [html.escape(text[cursor:at]), _shade(text[at:at + len(w)], v, lim)]
        cursor = at + len(w)
    out.append(html.escape(text[cursor:]))
    return "".join(out)


def note_page(case_id: str, words: list[str], scores: Any) -> str:
    """``note.html``: the shaded note as a page of its own."""
    return (f"<!doctype html><meta charset=utf-8><title>note attribution {html.escape(case_id)}"
            f"</title><p style='font-family:sans-serif;line-height:1.8'>{highlighted_words(words, scores)}</p>\n")


__all__ = ["explanation_summary", "highlighted_text", "highlighted_words", "note_page", "write_explanation"]
