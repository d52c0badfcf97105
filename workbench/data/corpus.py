"""The readers' pretraining corpora as data: the typed objects training reads, and the readers of their files.

Why here: training must never import the cohort generator (the generator is a stand-in for data that comes from
elsewhere: an annotated CT collection, an upstream note-extraction model's corpus), so the corpora cross from
``workbench.cohort`` to ``workbench.train`` as files. ``workbench.cohort.ct_corpus`` and
``workbench.cohort.note_corpus`` write them; the application layer (CLI, demo, benchmarks) runs the generator
and hands the file to training, which reads it here.

File formats (written by the cohort, read here):

* CT corpus: a manifest ``ct_corpus_{seed}_{n}.json``
  ``{"kind": "ct_corpus", "format": 1, "seed", "n", "facts": [...], "classes": {fact: [class, ...]},
  "chunks": [file name, ...]}`` beside its chunk files ``chunk_{seed}_{start}_{stop}.npz``, each holding
  ``ct_patch`` (k, 1, P, P, P) float16, ``ct_context`` (k, 2, C, C, C) float16, ``ct_position`` (k, 3) float32
  and one (k,) float32 array per fact. A corpus with reader disagreement has a second manifest,
  ``ct_corpus_{seed}_{n}_noisy.json``: the same keys plus ``"annotations": {"file", "facts", "noise"}``, naming an
  ``.npz`` with one (n,) float32 array per noisy fact (one simulated radiologist's annotation) and describing the
  error model; the clean facts stay in the chunks. The arrays are model inputs already: the generator renders a phantom in
  memory and hands it to :func:`phantom_inputs` (passed in by the caller, so the cohort never imports this
  layer), because a raw HU volume is 5-8 MB compressed and a corpus of 1,500 of them would be about 10 GB.
* Note corpus: ``notes_{seed}_{n}.jsonl``; line 1 a header ``{"kind": "note_corpus", "format": 1, "seed",
  "n", "facts": [...], "classes": {...}}``, then one ``{"text": ..., "facts": {fact: value}}`` per note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from monai.data import MetaTensor

FORMAT = 1


@dataclass
class CTCorpus:
    """Annotated phantoms as the CT encoder reads them, with what a radiologist reads off each one."""

    ct_patch: torch.Tensor  # (N, 1, P, P, P) float16, windowed HU in [0, 1]
    ct_context: torch.Tensor  # (N, 2, C, C, C) float16
    ct_position: torch.Tensor  # (N, 3) float32
    facts: dict[str, np.ndarray]  # fact -> (N,) float32 (log mm; class index; 0/1), in the generator's order
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class facts' names; the rest: regression/binary
    seed: int = 0  # the generator's seed (reported in the reader's card)
    # one simulated radiologist's annotations of some facts (reader disagreement), None for a clean corpus; the
    # clean ``facts`` stay the truth a reader's held-out figures are measured against
    annotations: dict[str, np.ndarray] | None = None
    annotation_noise: dict[str, Any] | None = None  # the error model that made ``annotations``

    def __len__(self) -> int:
        return len(self.ct_position)

    def training_facts(self, noisy: bool) -> dict[str, np.ndarray]:
        """What a reader learns from: the clean facts, or (``noisy``) with the noisy annotations in place of the
        facts they cover; a clean corpus asked for noisy annotations is refused."""
        if not noisy:
            return self.facts
        if self.annotations is None:
            raise WorkbenchError("annotation noise asked for, but this CT corpus has no noisy annotations (write it "
                                 "with write_ct_corpus(..., annotation_noise=True) and load its _noisy manifest)")
        return {**self.facts, **self.annotations}


@dataclass
class NoteCorpus:
    """Synthetic notes with the facts each states (never malignancy)."""

    texts: list[str]  # raw notes (PHI-like identifiers included; de-identify before reading)
    facts: dict[str, np.ndarray]  # fact -> (N,) float32 (age in years; class index; 0/1)
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seed: int = 0

    def __len__(self) -> int:
        return len(self.texts)


class PhantomScan(Protocol):
    """What :func:`phantom_image` needs of a rendered phantom (``workbench.cohort.phantom.RenderedCT`` is one)."""

    hu: np.ndarray  # (slices, rows, cols) HU; slice 0 the most inferior
    origin_lps: tuple[float, float, float]
    pixel_spacing_mm: float
    slice_spacing_mm: float


def phantom_image(ct: PhantomScan) -> MetaTensor:
    """A rendered phantom as ``load_ct_series`` would return its written series: (1, I=col, J=row, K=slice) HU,
    RAS affine (rows along +x, columns along +y, slices along +z in LPS; then x and y negated). Saves the DICOM
    round trip, which would triple the corpus' cost (``tests/cohort/test_ct_corpus.py`` checks they agree)."""
    from monai.data import MetaTensor

    ps, ss = ct.pixel_spacing_mm, ct.slice_spacing_mm
    affine = np.eye(4)
    affine[0, 0], affine[1, 1], affine[2, 2] = ps, ps, ss
    affine[:3, 3] = ct.origin_lps
    affine[:2] *= -1.0  # LPS -> RAS
    hu = np.ascontiguousarray(ct.hu.transpose(2, 1, 0)).astype(np.float32)  # (cols, rows, slices)
    meta = {"spacing": np.array([ps, ps, ss]), "filename_or_obj": "phantom"}
    return MetaTensor(torch.from_numpy(hu[None]), affine=torch.from_numpy(affine), meta=meta)


def phantom_inputs(ct: PhantomScan, nodule_lps: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """A phantom through the same MONAI pipeline a cohort case goes through: the arrays a corpus chunk stores.

    Module-level on purpose: the generator's spawned workers receive it by name."""
    from workbench.data.transforms import PreprocessConfig, ct_pipeline, lps_to_ras

    out = ct_pipeline(PreprocessConfig(), load=False)({"image": phantom_image(ct), "nodule_ras": lps_to_ras(nodule_lps)})
    return {
        "ct_patch": np.asarray(out["ct_patch"], dtype=np.float16),
        "ct_context": np.asarray(out["ct_context"], dtype=np.float16),
        "ct_position": np.asarray(out["ct_position"], dtype=np.float32),
    }


def _header(path: Path, text: str, kind: str) -> dict[str, Any]:
    try:
        head = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkbenchError(f"{path}: not a {kind} file (bad JSON: {e.msg})") from None
    if not isinstance(head, dict) or head.get("kind") != kind or head.get("format") != FORMAT:
        raise WorkbenchError(f"{path}: not a {kind} file of format {FORMAT} (kind {head.get('kind')!r}, "
                             f"format {head.get('format')!r})" if isinstance(head, dict) else f"{path}: not a {kind} file")
    return head


def _classes(head: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in head.get("classes", {}).items()}


def load_ct_corpus(manifest: str | Path) -> CTCorpus:
    """The CT corpus a manifest names (written by ``workbench.cohort.ct_corpus.write_ct_corpus``)."""
    path = Path(manifest)
    if not path.is_file():
        raise WorkbenchError(f"{path}: CT corpus manifest not found (generate it with workbench.cohort.ct_corpus)")
    head = _header(path, path.read_text(encoding="utf-8"), "ct_corpus")
    parts = []
    for name in head["chunks"]:
        chunk = path.parent / name
        try:
            with np.load(chunk) as z:
                parts.append(dict(z))
        except (OSError, ValueError) as e:
            raise WorkbenchError(f"{chunk}: CT corpus chunk missing or unreadable ({e})") from None
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if len(cat["ct_position"]) != head["n"]:
        raise WorkbenchError(f"{path}: names {head['n']} cases, its chunks hold {len(cat['ct_position'])}")
    annotations, noise = None, None
    if "annotations" in head:
        ann = head["annotations"]
        try:
            with np.load(path.parent / ann["file"]) as z:
                annotations = {k: z[k].astype(np.float32) for k in ann["facts"]}
        except (OSError, ValueError, KeyError) as e:
            raise WorkbenchError(f"{path.parent / ann['file']}: noisy annotations missing or unreadable ({e})") from None
        if any(len(v) != head["n"] for v in annotations.values()):
            raise WorkbenchError(f"{path}: names {head['n']} cases, its noisy annotations hold another number")
        noise = dict(ann.get("noise", {}))
    return CTCorpus(torch.from_numpy(cat["ct_patch"]), torch.from_numpy(cat["ct_context"]),
                    torch.from_numpy(cat["ct_position"]), {k: cat[k].astype(np.float32) for k in head["facts"]},
                    _classes(head), int(head["seed"]), annotations, noise)


def load_note_corpus(path: str | Path) -> NoteCorpus:
    """The note corpus in a ``notes_{seed}_{n}.jsonl`` file (``workbench.cohort.note_corpus.write_note_corpus``)."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"{path}: note corpus not found (generate it with workbench.cohort.note_corpus)")
    first, *rows = path.read_text(encoding="utf-8").splitlines()
    head = _header(path, first, "note_corpus")
    if len(rows) != head["n"]:
        raise WorkbenchError(f"{path}: header names {head['n']} notes, the file holds {len(rows)}")
    notes = [json.loads(r) for r in rows]
    facts = {k: np.asarray([r["facts"][k] for r in notes], dtype=np.float32) for k in head["facts"]}
    return NoteCorpus([r["text"] for r in notes], facts, _classes(head), int(head["seed"]))


__all__ = ["CTCorpus", "NoteCorpus", "PhantomScan", "load_ct_corpus", "load_note_corpus", "phantom_image",
           "phantom_inputs"]
