"""Reader disagreement for the CT corpus' annotations: what a radiologist would have written, not the truth.

Why: real annotated collections (LIDC-IDRI and the like) carry each reader's measurement and rating, and readers
disagree. A CT reader pretrained on the generator's noise-free truth learns from cleaner labels than any real
collection offers, so its held-out figures flatter what pretraining on real annotations would give. With the
option on (``workbench pretrain-ct --annotation-noise``) the reader learns from one simulated radiologist's
annotations instead; the images stay the same, the clean truth stays in the corpus beside the noisy annotations,
and the reader's held-out figures are still measured against the clean truth.

The error model (approximate published figures, quoted from memory; the magnitudes, not exact values):
- **Diameter**: manual diameter of small pulmonary nodules on CT has inter-reader 95% limits of agreement of
  about +-1.5-2 mm (Revel et al., Radiology 2004, about +-1.7 mm for nodules under 20 mm; the Fleischner
  Society's 2017 measurement guidance, Bankier et al., treats changes under about 2 mm as within measurement
  error), growing with size. Here the limits between two readers are ``+-(1.4 mm + 0.06 x diameter)``
  (+-1.7 mm at 5 mm, +-2.0 mm at 10 mm, +-2.6 mm at 20 mm); one reader's error against the truth is Gaussian with
  standard deviation ``limits / (1.96 x sqrt(2))`` (two independent readers' difference has sqrt(2) times one
  reader's spread), unbiased, and the measurement is kept above ``MIN_DIAMETER_MM``.
- **Type** (solid / part-solid / non-solid): inter-reader Cohen's kappa about 0.6 with part-solid the least
  reproducible class, most often called solid or non-solid by another reader (van Riel et al., Radiology 2015,
  "Observer variability for classification of pulmonary nodules on low-dose CT"; LIDC-IDRI texture ratings
  show the same pattern). ``TYPE_CONFUSION`` (rows: true type, columns: the type the reader writes) gives two
  readers a kappa of about 0.61 at the corpus' type mix (78/8/15%), and a reader against the truth about 0.76;
  a true part-solid nodule is written part-solid 55% of the time.
- **Spiculation**: margin ratings agree less well than size (LIDC-IDRI spiculation ratings: fair to moderate
  agreement). ``SPICULATION_FLIP``: a spiculated margin is written smooth 25% of the time, a smooth one
  spiculated 3%; at the corpus' 10% spiculated this gives two readers a kappa of about 0.5.
Emphysema and upper-lobe location stay as the truth has them (less disputed, and not asked for here).

Seeding: every case draws its errors from its own generator, ``default_rng([ANNOTATION_NOISE_SEED, corpus seed,
reader, case index])``, a stream the renderer never touches, so the clean corpus is the same bytes with the option
on or off, and a case's noisy annotation does not depend on the corpus' size or chunking. ``reader`` picks
another simulated radiologist (two readers of the same case disagree as two radiologists would: what the
tests measure kappa and the limits of agreement on; ``workbench.metrics.cohen_kappa``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ANNOTATION_NOISE_SEED = 31_337  # the noise's own stream; neither a cohort seed nor a corpus seed
NOISY_FACTS = ("log_diameter", "nodule_type", "spiculated")  # the facts a reader's annotation changes

LOA_BASE_MM, LOA_PER_MM = 1.4, 0.06  # inter-reader 95% limits of agreement: +-(1.4 mm + 0.06 x diameter)
MIN_DIAMETER_MM = 1.0  # no reader writes a nodule smaller than this
# rows: the true type, columns: the type a reader writes (solid, part-solid, non-solid: spec.NODULE_TYPES' order)
TYPE_CONFUSION = np.array([[0.95, 0.03, 0.02],
                           [0.25, 0.55, 0.20],
                           [0.03, 0.09, 0.88]])
SPICULATION_FLIP = {"spiculated_called_smooth": 0.25, "smooth_called_spiculated": 0.03}


def limits_of_agreement_mm(diameter_mm: np.ndarray | float) -> np.ndarray:
    """The half-width of two readers' 95% limits of agreement at this true diameter (mm)."""
    return LOA_BASE_MM + LOA_PER_MM * np.asarray(diameter_mm, dtype=float)


def reader_sd_mm(diameter_mm: np.ndarray | float) -> np.ndarray:
    """One reader's error standard deviation against the truth (mm): the limits over 1.96 x sqrt(2)."""
    return limits_of_agreement_mm(diameter_mm) / (1.96 * math.sqrt(2.0))


def noisy_annotations(facts: dict[str, np.ndarray], corpus_seed: int, reader: int = 0) -> dict[str, np.ndarray]:
    """One simulated radiologist's annotations of the corpus' cases (``facts`` in the corpus' encoding: log mm,
    class index, 0/1; case ``i`` is row ``i``): the ``NOISY_FACTS``, float32 like the clean ones."""
    log_d = np.asarray(facts["log_diameter"], dtype=np.float64)
    kind = np.asarray(facts["nodule_type"]).astype(int)
    spic = np.asarray(facts["spiculated"]) > 0.5
    n = len(log_d)
    d = np.exp(log_d)
    out_d, out_t, out_s = np.empty(n), np.empty(n), np.empty(n)
    flip = (SPICULATION_FLIP["smooth_called_spiculated"], SPICULATION_FLIP["spiculated_called_smooth"])
    for i in range(n):
        rng = np.random.default_rng([ANNOTATION_NOISE_SEED, corpus_seed, reader, i])
        e, u_type, u_spic = rng.standard_normal(), rng.random(), rng.random()
        out_d[i] = max(MIN_DIAMETER_MM, d[i] + float(reader_sd_mm(d[i])) * e)
        out_t[i] = min(int(np.searchsorted(np.cumsum(TYPE_CONFUSION[kind[i]]), u_type, side="right")), 2)
        out_s[i] = float(spic[i] != (u_spic < flip[int(spic[i])]))
    return {"log_diameter": np.log(out_d).astype(np.float32), "nodule_type": out_t.astype(np.float32),
            "spiculated": out_s.astype(np.float32)}


def noise_model() -> dict[str, Any]:
    """The error model as plain data, recorded in the noisy corpus' manifest and the reader's ``ct_reader.json``."""
    return {"seed": ANNOTATION_NOISE_SEED, "facts": list(NOISY_FACTS),
            "diameter": {"inter_reader_loa95_mm": f"+-({LOA_BASE_MM} + {LOA_PER_MM} x diameter)",
                         "reader_sd_mm": "loa / (1.96 x sqrt 2)", "min_mm": MIN_DIAMETER_MM},
            "nodule_type_confusion": TYPE_CONFUSION.tolist(), "spiculation_flip": dict(SPICULATION_FLIP),
            "source": "approximate published inter-reader figures (workbench.cohort.annotation_noise)"}


__all__ = ["ANNOTATION_NOISE_SEED", "MIN_DIAMETER_MM", "NOISY_FACTS", "SPICULATION_FLIP", "TYPE_CONFUSION",
           "limits_of_agreement_mm", "noise_model", "noisy_annotations", "reader_sd_mm"]
