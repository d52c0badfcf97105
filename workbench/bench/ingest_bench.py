"""``workbench bench ingest``: load + preprocess speed against plain MONAI, cold and cached, in one run.

Both sides read the same series after one warm-up read of the bytes, so the OS page cache is equal for both:
"cold" means our preprocessing cache is empty (every slice decoded), not that the disk is cold.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from workbench.bench.common import cached_cohort, envelope
from workbench.data.cache import PreprocessCache, series_files
from workbench.data.case import load_cases
from workbench.data.preprocess import preprocess_ct
from workbench.data.transforms import PreprocessConfig


def _monai_plain(series_dir: Path, spacing: float) -> int:
    from monai.data import PydicomReader
    from monai.transforms import LoadImage, Spacing

    img = LoadImage(reader=PydicomReader(), ensure_channel_first=True, image_only=True)(str(series_dir))
    Spacing(pixdim=(spacing,) * 3, mode="bilinear")(img)
    return int(img.shape[-1])


def run_ingest_bench(*, quick: bool = False, cohort: str | Path | None = None, seed: int = 0, progress: bool = True) -> dict:
    start = time.perf_counter()
    preset = "tiny" if quick else "small"
    root = Path(cohort) if cohort else cached_cohort(preset, seed, progress=progress)
    site_dir = sorted(p for p in root.iterdir() if (p / "manifest.csv").exists())[0]
    cases = [c for c in load_cases(site_dir) if c.has_ct]
    config = PreprocessConfig()
    for c in cases:  # warm the page cache equally for both sides
        for f in series_files(Path(str(c.series_dir))):
            f.read_bytes()

    t0 = time.perf_counter()
    slices = sum(_monai_plain(Path(str(c.series_dir)), config.patch_spacing_mm) for c in cases)
    monai_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        cache = PreprocessCache(tmp)
        t0 = time.perf_counter()
        ours = [preprocess_ct(c, config, cache) for c in cases]
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = [preprocess_ct(c, config, cache) for c in cases]
        cached_s = time.perf_counter() - t0
    assert all(a.cached for a in again), "second pass should read every case from the cache"
    assert sum(o.n_slices for o in ours) == slices
    result = {
        "site": site_dir.name,
        "n_series": len(cases),
        "n_slices": slices,
        "slices_per_s": {
            "workbench_cold": round(slices / cold_s, 1),
            "monai_cold": round(slices / monai_s, 1),
            "workbench_cached": round(slices / cached_s, 1),
        },
        "seconds": {"workbench_cold": round(cold_s, 3), "monai_cold": round(monai_s, 3), "workbench_cached": round(cached_s, 3)},
        "speedup_vs_monai": round(monai_s / cold_s, 2),
        "cached_speedup": round(cold_s / cached_s, 1),
        "monai_baseline": "LoadImage(reader='PydicomReader') + Spacing(pixdim=patch spacing, bilinear) on the whole series",
        "workbench_pipeline": "load_ct_series + ROI Spacingd + nodule patch + chest context + windowing (ct_pipeline)",
    }
    return {**result, **envelope(preset if not cohort else "custom", time.perf_counter() - start)}
