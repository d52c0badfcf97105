"""The explanation's pictures as PNG bytes: CT slices with the attribution, the shaded note, the gate bar.

Drawn in memory so that ``workbench explain`` writes them as files and ``workbench report`` embeds the very same
pictures without a round trip through the disk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.explain.attributions import Explanation

if TYPE_CHECKING:
    from workbench.explain.case import CaseExplanation


@dataclass
class CaseFigures:
    ct_slices: bytes | None  # None when the CT was not attributed
    note: bytes | None  # None when the note was not attributed
    gate: bytes

    def files(self) -> dict[str, bytes]:
        """File name -> PNG bytes, for the pictures there are."""
        named = {"ct_slices.png": self.ct_slices, "note.png": self.note, "gate.png": self.gate}
        return {name: png for name, png in named.items() if png is not None}


def case_figures(ce: CaseExplanation) -> CaseFigures:
    exp, patch = ce.explanation, ce.ct_patch
    return CaseFigures(
        ct_slices=ct_slices_png(patch, exp.ct_attribution) if patch is not None and exp.ct_attribution is not None
        else None,
        note=note_png(exp) if exp.word_attribution is not None else None,
        gate=gate_png(exp))


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, **kw: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, **kw)
    _plt().close(fig)
    return buf.getvalue()


def ct_slices_png(patch: np.ndarray, attr: np.ndarray) -> bytes:
    """The three orthogonal slices through the most attributed voxel, attribution over the patch."""
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
    return _png(fig)


def note_png(exp: Explanation) -> bytes:
    """The de-identified note, each word boxed in its attribution's colour (red raised the risk, blue lowered it)."""
    a = exp.word_attribution
    assert a is not None
    lim = float(np.abs(a).max()) or 1.0
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
    return _png(fig, bbox_inches="tight")


def gate_png(exp: Explanation) -> bytes:
    """How much each modality counted: the gate weights as bars, an absent modality marked."""
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
    return _png(fig)


__all__ = ["CaseFigures", "case_figures", "ct_slices_png", "gate_png", "note_png"]
