"""Spiculation and emphysema from the CT (``workbench.runtime.measure_margin``) on volumes drawn here: dense strands
radiating from a sphere raise the spiculation score past its threshold and a smooth sphere stays below it; LAA-950
counts exactly the lung voxels below -950 HU; the ray geometry matches the ellipsoid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from workbench.runtime.measure_margin import (
    MarginConfig,
    low_attenuation_share,
    spiculation_score,
    surface_distance_mm,
)

SPACING = (1.0, 0.8, 0.8)  # (z, y, x) mm


def _nodule(spikes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 10 mm solid sphere in -860 HU lung, with ``spikes`` antipodal pairs of 2 mm strands reaching 6 mm beyond it."""
    shape = (48, 60, 60)
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, SPACING, strict=True)), indexing="ij")
    c = np.array([shape[i] * SPACING[i] / 2 for i in range(3)])
    p = np.stack([z - c[0], y - c[1], x - c[2]], axis=-1)
    r = np.linalg.norm(p, axis=-1)
    dense = r <= 5.0
    rng = np.random.default_rng(seed)
    for d in rng.normal(size=(spikes, 3)):
        d /= np.linalg.norm(d)
        along = p @ d
        off = np.linalg.norm(p - along[..., None] * d, axis=-1)
        dense |= (np.abs(along) <= 11.0) & (off <= 1.0)
    hu = np.where(dense, 30.0, -860.0) + rng.normal(0, 20, shape)
    return ndi.gaussian_filter(hu, 0.6).astype(np.float32), c


def test_strands_beyond_the_surface_make_a_nodule_spiculated() -> None:
    config = MarginConfig()
    smooth, c = _nodule(0)
    spiky, _ = _nodule(30)
    s0 = spiculation_score(smooth, SPACING, c, (5.0, 5.0, 5.0), 0.0, -860.0, config)
    s1 = spiculation_score(spiky, SPACING, c, (5.0, 5.0, 5.0), 0.0, -860.0, config)
    assert s0 < 0.05 < config.spiculated_min_score <= s1, (s0, s1)


def test_laa_950_counts_lung_voxels_below_minus_950() -> None:
    hu = np.full((10, 10, 10), -870.0)
    hu[:3] = -975.0  # 30% emphysema
    lung = np.ones_like(hu, bool)
    lung[:, :, :5] = False  # half the volume is not lung: 30% of the rest
    assert low_attenuation_share(hu, lung) == pytest.approx(0.3)
    assert low_attenuation_share(hu, np.zeros_like(lung)) == 0.0
    assert low_attenuation_share(hu, lung) >= MarginConfig().emphysema_min_laa > low_attenuation_share(
        np.full_like(hu, -870.0), lung)


def test_rays_end_on_the_ellipsoid_surface() -> None:
    d = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # (z, y, x): along x, y, z
    assert surface_distance_mm(d, (6.0, 3.0, 2.0), 0.0) == pytest.approx([6.0, 3.0, 2.0])
    assert surface_distance_mm(d, (6.0, 3.0, 2.0), np.pi / 2) == pytest.approx([3.0, 6.0, 2.0])  # a turned to +y
