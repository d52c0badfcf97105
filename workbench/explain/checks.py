"""Checks that an explanation shows what the model used, not what any model would show.

- ``randomized_copy``: the model with every weight re-drawn (Adebayo et al. 2018, "Sanity checks for saliency
  maps", cascading to the full model): an attribution method whose maps barely change under it explains the
  input, not the model.
- ``nodule_mask`` / ``top_share_inside``: localisation against the truth. The patch is centred on the nodule
  (``NoduleCropd`` puts the centre at voxel P/2 on each axis), so "inside the nodule" is also where a centre-biased
  or input-magnitude-driven map lands: only the gap to the randomised model says something.
- ``phrase_word_flags``: which words of the note the model read belong to the phrases the generator wrote for a
  variable (the truth's ``note_facts``), found in the de-identified, number-normalised text by offsets.
- ``deletion_curve``: the risk as the top-attributed voxels (or words) are replaced by a named fill, against a
  random order; the area under it (fraction removed on [0, 1]) is lower when the attribution found what the
  model relies on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from workbench.models.model import NoduleRiskModel

DELETION_FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
CT_FILL = "air: 0 after windowing (-1000 HU), the Integrated Gradients baseline"
NOTE_FILL = "[PAD] token (id 0, value 0), the Layer Integrated Gradients baseline"
NOTE_ONLY_FACTS = ("age", "sex", "family_history", "smoking", "prior_cancer", "prior_ct")


def randomized_copy(model: NoduleRiskModel, seed: int = 0) -> NoduleRiskModel:
    """A deep copy with every parameter re-initialised (modules' own ``reset_parameters``; any parameter a module
    does not reset is drawn from N(0, 0.02^2)). Frozen flags and buffers are kept."""
    m = copy.deepcopy(model)
    torch.manual_seed(seed)
    reset: set[int] = set()
    for mod in m.modules():
        fn = getattr(mod, "reset_parameters", None)
        if callable(fn) and mod is not m:
            fn()
            reset.update(id(p) for p in mod.parameters(recurse=False))
    with torch.no_grad():
        for p in m.parameters():
            if id(p) not in reset:
                nn.init.normal_(p, std=0.02)
    return m.eval()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(np.ravel(a), np.ravel(b)).statistic
    return float(r) if np.isfinite(r) else 0.0


def nodule_mask(patch_size: int, spacing_mm: float, diameter_mm: float, dilate_mm: float = 5.0) -> np.ndarray:
    """(P, P, P) bool: the nodule (a sphere of the truth's diameter at the patch centre) dilated by ``dilate_mm``."""
    c = patch_size / 2.0
    g = (np.arange(patch_size) - c) * spacing_mm
    r2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    return r2 <= (diameter_mm / 2.0 + dilate_mm) ** 2


def top_share_inside(attribution: np.ndarray, mask: np.ndarray, top: float = 0.01) -> float:
    """Share of the top ``top`` fraction of voxels by |attribution| that lie inside ``mask``."""
    a = np.abs(np.ravel(attribution))
    k = max(1, int(round(top * a.size)))
    idx = np.argpartition(-a, k - 1)[:k]
    return float(np.ravel(mask)[idx].mean())


def word_of_token(tokens: Sequence[str]) -> np.ndarray:
    """Index of the word each WordPiece token belongs to (``##`` pieces join the word before them)."""
    out, w = [], -1
    for t in tokens:
        if not (t.startswith("##") and w >= 0):
            w += 1
        out.append(w)
    return np.asarray(out, dtype=int)


def phrase_word_flags(clean: str, phrases: Sequence[str], tokenizer, max_length: int) -> tuple[np.ndarray, int]:  # noqa: ANN001
    """(n_words,) bool: which words of the note overlap one of ``phrases``; and how many phrases were found.

    ``clean`` is the text the model read (``encode_note``'s second value); phrases are normalised the same way
    (numbers as digits) and matched case-insensitively, every occurrence."""
    from workbench.models.tokenizer import normalize_note

    enc = tokenizer(clean, truncation=True, max_length=max_length, add_special_tokens=False,
                    return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    words = word_of_token(tokens)
    low = clean.lower()
    spans, found = [], 0
    for phrase in phrases:
        q = normalize_note(phrase).lower().strip()
        start, hit = low.find(q), False
        while q and start >= 0:
            spans.append((start, start + len(q)))
            hit = True
            start = low.find(q, start + 1)
        found += hit
    flags = np.zeros(int(words.max()) + 1 if len(words) else 0, dtype=bool)
    for (a, b), w in zip(enc["offset_mapping"], words, strict=True):
        if any(a < e and b > s for s, e in spans):
            flags[w] = True
    return flags, found


def note_ranks_high(word_attribution: np.ndarray, flags: np.ndarray) -> bool | None:
    """The issue's test: mean |attribution| of the flagged words above the median |attribution| of the others."""
    a = np.abs(np.asarray(word_attribution, dtype=float))
    if len(a) != len(flags) or not flags.any() or flags.all():
        return None
    return bool(a[flags].mean() > np.median(a[~flags]))


def deletion_curve(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, order: np.ndarray,
                   fill: float | int, fractions: Sequence[float] = DELETION_FRACTIONS,
                   groups: np.ndarray | None = None) -> np.ndarray:
    """``score`` (batched, one probability per row) of ``x`` (one row) with the first ``fraction`` of ``order``
    replaced by ``fill``, per fraction. ``order`` ranks the flat elements of ``x[0]``, or, with ``groups`` (the
    group of each flat element, e.g. the word of each token), ranks the groups."""
    flat = x[0].reshape(-1)
    n_units = int(groups.max()) + 1 if groups is not None else flat.numel()
    rows = []
    for f in fractions:
        k = int(round(f * n_units))
        keep = flat.clone()
        drop = np.asarray(order[:k], dtype=int)
        if groups is not None:
            drop = np.flatnonzero(np.isin(groups, drop))
        if len(drop):
            keep[torch.as_tensor(drop)] = fill
        rows.append(keep.reshape(x.shape[1:]))
    with torch.no_grad():
        return score(torch.stack(rows)).detach().cpu().numpy().astype(float)


def curve_auc(scores: np.ndarray, fractions: Sequence[float] = DELETION_FRACTIONS) -> float:
    return float(np.trapezoid(scores, np.asarray(fractions, dtype=float)))


__all__ = ["CT_FILL", "DELETION_FRACTIONS", "NOTE_FILL", "NOTE_ONLY_FACTS", "curve_auc", "deletion_curve",
           "nodule_mask", "note_ranks_high", "phrase_word_flags", "randomized_copy", "spearman", "top_share_inside",
           "word_of_token"]
