"""The nodule centre as a reader marks it: the generator's exact centre, moved like a radiologist's click.

The CT reaches the model as a 32^3 patch cut around the case's nodule centre (``Case.nodule_lps_mm``, from the
manifest's ``nodule_*_mm`` columns; ``workbench.data.preprocess`` centres the patch there and derives the nodule's
position token from it). The synthetic manifest holds the generator's exact centre, which no reader gives. A
mark here is the exact centre plus:
- a Gaussian error of ``sd_mm`` = 2 mm on each axis (LPS), for every mark;
- for a share ``off_share`` = 10% of marks, one nodule radius (the truth's diameter / 2) in a uniformly random
  direction on top: the click lands on the nodule's edge, not its middle.
The draws are seeded per case (``seed``, the case id), so every training seed's model reads the same marks, a
rerun draws them again identically, and a case's mark does not depend on which other cases are marked.
Benchmarks only (it reads the truth's diameters).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from workbench.data.case import Case

MARK_SEED = 31_415


@dataclass(frozen=True)
class MarkError:
    """How far a reader's mark falls from the exact centre (module docstring)."""

    sd_mm: float = 2.0  # per axis, every mark
    off_share: float = 0.1  # marks also off by one nodule radius
    seed: int = MARK_SEED

    def to_dict(self) -> dict[str, float]:
        return {"sd_mm_per_axis": self.sd_mm, "off_by_radius_share": self.off_share, "seed": self.seed}


def mark_offset(case_id: str, diameter_mm: float, error: MarkError = MarkError()) -> tuple[np.ndarray, bool]:
    """The mark's offset from the exact centre (mm, LPS) and whether it is one of the off-by-a-radius marks."""
    rng = np.random.default_rng([error.seed, zlib.crc32(case_id.encode())])
    offset = rng.normal(0.0, error.sd_mm, 3)
    off = bool(rng.random() < error.off_share)
    direction = rng.normal(size=3)  # drawn for every case, so the off decision alone changes nothing else
    if off:
        offset += direction / np.linalg.norm(direction) * diameter_mm / 2
    return offset, off


def reader_marks(cases: Sequence[Case], diameters_mm: Mapping[str, float], error: MarkError = MarkError()) -> list[Case]:
    """The cases with each CT's centre replaced by a reader-like mark; cases without a CT are returned as they are."""
    out = []
    for case in cases:
        if case.nodule_lps_mm is None:
            out.append(case)
            continue
        offset, _ = mark_offset(case.case_id, diameters_mm[case.case_id], error)
        x, y, z = (float(v) for v in np.add(case.nodule_lps_mm, offset))
        out.append(replace(case, nodule_lps_mm=(x, y, z)))
    return out


__all__ = ["MARK_SEED", "MarkError", "mark_offset", "reader_marks"]
