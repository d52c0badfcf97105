"""One call from a Case to the model's CT inputs, through the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.data.cache import PreprocessCache, series_files
from workbench.data.case import Case
from workbench.data.transforms import PreprocessConfig, ct_pipeline, lps_to_ras
from workbench.errors import CaseError, WorkbenchError


@dataclass
class CTInputs:
    """What the CT encoder reads, plus the geometry ingestion reports."""

    ct_patch: np.ndarray  # (1, P, P, P) float32 in [0, 1]
    ct_context: np.ndarray  # (2, C, C, C) float32: windowed HU, LAA-950 share
    ct_position: np.ndarray  # (3,) float32: nodule position as fractions of the lung bounding box
    spacing_mm: tuple[float, float, float]  # source series: column, row, slice spacing
    n_slices: int
    cached: bool  # True when read from the cache


def preprocess_ct(case: Case, config: PreprocessConfig | None = None, cache: PreprocessCache | None = None) -> CTInputs:
    """Load and preprocess a case's CT, or read it from the cache. Raises WorkbenchError on bad input."""
    config = config or PreprocessConfig()
    if case.series_dir is None or case.nodule_lps_mm is None:
        raise CaseError(f"case {case.case_id}: has no CT series")
    series_dir = Path(case.series_dir)
    if not series_dir.exists():
        raise CaseError(f"{series_dir}: series folder of case {case.case_id} does not exist")
    key = None
    if cache is not None:
        files = series_files(series_dir)
        key = cache.key_for(files, {"config": config.to_dict(), "nodule_lps_mm": list(case.nodule_lps_mm)})
        hit = cache.get(key)
        if hit is not None:
            arrays, meta = hit
            return CTInputs(arrays["ct_patch"], arrays["ct_context"], arrays["ct_position"],
                            tuple(meta["spacing_mm"]), meta["n_slices"], True)
    try:
        out = ct_pipeline(config)({"image": str(series_dir), "nodule_ras": lps_to_ras(case.nodule_lps_mm)})
    except RuntimeError as exc:  # MONAI's Compose wraps errors: surface our one-line refusal, not its traceback
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, WorkbenchError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None
    image = out.pop("image")
    spacing = tuple(float(s) for s in np.asarray(image.meta["spacing"]))
    inputs = CTInputs(
        ct_patch=np.asarray(out["ct_patch"], dtype=np.float32),
        ct_context=np.asarray(out["ct_context"], dtype=np.float32),
        ct_position=np.asarray(out["ct_position"], dtype=np.float32),
        spacing_mm=spacing,  # type: ignore[arg-type]
        n_slices=int(image.shape[-1]),
        cached=False,
    )
    if cache is not None and key is not None:
        cache.put(key, {"ct_patch": inputs.ct_patch, "ct_context": inputs.ct_context, "ct_position": inputs.ct_position},
                  {"spacing_mm": list(spacing), "n_slices": inputs.n_slices})
    return inputs
