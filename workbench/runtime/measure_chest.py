"""What the whole series says about a nodule measurement: chest and lung geometry, the lobe, the scanner's blur.

Two things a nodule fit (``measure_fit.py``) cannot learn from the few voxels around the nodule:

- **Where the lungs are**, for the lobe. Fissures are not visible on this workbench's CTs (and often not on low-dose
  screening CTs either), so the lobe comes from the nodule's position in its lung, using the fissure geometry
  of a typical chest (``lobe_of``; its limits are in its docstring).
- **How much the scanner blurs in-plane**, so that the fit can undo partial volume. The reconstruction kernel
  correlates neighbouring pixels' noise; the correlation of the noise in flat soft tissue (liver, muscle, heart)
  gives the kernel's width, the way a CT physicist reads a noise-power spectrum. Slice thickness needs no
  estimate: it is the slice spacing in the header (contiguous slices).

All arrays here are canonical: (z, y, x) indexed, each axis increasing towards patient superior, posterior and
left (LPS), with ``origin`` the LPS position (x, y, z order, mm) of voxel (0, 0, 0); ``measure.py`` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

LOBES = ("RUL", "RML", "RLL", "LUL", "LLL")


@dataclass(frozen=True)
class ChestConfig:
    """Thresholds and the typical fissure geometry the lobe rule assumes."""

    body_hu: float = -500.0  # skin: halfway between air (-1000) and fat (-100)
    lung_hu: float = -400.0  # pleura: halfway between aerated lung (~-870) and chest wall (~0)
    midline_mm: float = 20.0  # lung pixels closer than this to the midline are skipped (trachea, main bronchi)
    min_lung_pixels: int = 10  # a slice with fewer lung pixels is not counted as lung (noise, bronchus)
    # The deepest recess of the lungs lies this far below the lowest lung an axial slice shows: behind the spine
    # and in the thin posterior sulcus the lung is too thin to see. Fitted on the synthetic train split.
    base_below_visible_mm: float = 17.0
    # Oblique fissure height as a fraction of lung height, at the front and at the back of the chest; horizontal
    # (minor) fissure height on the right. Middles of the ranges a typical chest shows (see lobe_of).
    oblique_front: float = 0.20
    oblique_back: float = 0.80
    horizontal: float = 0.58
    kernel_min_mm: float = 0.3  # the in-plane blur estimate is clipped to this range
    kernel_max_mm: float = 1.5


@dataclass(frozen=True)
class ChestGeometry:
    """Body and lung landmarks of one series (LPS mm) and its noise; enough to name a lobe and to fit a nodule."""

    x_mid: float  # body centre, left-right: the patient's midline
    y_mid: float  # body centre, front-back
    half_depth_mm: float  # front-back half-depth of the pleural cavity
    z_base: float  # lowest point of the lungs (posterior costophrenic recesses), estimated
    z_apex: float  # highest point of the lungs
    kernel_sigma_mm: float  # in-plane Gaussian blur of the reconstruction kernel
    noise_hu: float  # noise standard deviation in flat soft tissue
    lung: np.ndarray  # bool (z, y, x): both lungs, nodules and vessels inside them included


def chest_geometry(hu: np.ndarray, origin: tuple[float, float, float], spacing: tuple[float, float, float],
                   config: ChestConfig = ChestConfig()) -> ChestGeometry:
    """Landmarks of one canonical series (module docstring): body outline, lung extent, blur and noise.

    Args:
        hu: (z, y, x) Hounsfield units, canonical orientation.
        origin: LPS (x, y, z) mm of voxel (0, 0, 0).
        spacing: (z, y, x) mm.

    Raises nothing: a series without lungs gives degenerate landmarks; ``measure.py`` refuses those.
    """
    sz, sy, sx = spacing
    nz, ny, nx = hu.shape
    xs = origin[0] + sx * np.arange(nx)
    ys = origin[1] + sy * np.arange(ny)
    zs = origin[2] + sz * np.arange(nz)

    # body: whatever the outside air does not reach, slice by slice (lungs and airway included); the outline of a
    # chest hardly changes from slice to slice, so its centre and depth come from the median over slices
    body = np.logical_not(_from_border(hu <= config.body_hu))
    cols = body.any(axis=1)  # (z, x)
    rows = body.any(axis=2)  # (z, y)
    has = cols.any(axis=1) & rows.any(axis=1)
    x_lo = np.array([xs[c.argmax()] for c in cols[has]])
    x_hi = np.array([xs[nx - 1 - c[::-1].argmax()] for c in cols[has]])
    y_lo = np.array([ys[r.argmax()] for r in rows[has]])
    y_hi = np.array([ys[ny - 1 - r[::-1].argmax()] for r in rows[has]])
    x_mid = float(np.median(0.5 * (x_lo + x_hi))) if has.any() else float(xs.mean())
    y_mid = float(np.median(0.5 * (y_lo + y_hi))) if has.any() else float(ys.mean())
    half_w = float(np.median(0.5 * (x_hi - x_lo) + 0.5 * sx)) if has.any() else 0.0
    half_d = float(np.median(0.5 * (y_hi - y_lo) + 0.5 * sy)) if has.any() else 0.0

    # lungs: air-like voxels the outside air does not reach (the skin's partial-volume rim is reached)
    air = hu < config.lung_hu
    lung = air & ~_from_border(air)
    lateral = np.abs(xs - x_mid) > config.midline_mm  # (x,)
    counts = (lung & lateral[None, None, :]).sum(axis=(1, 2))
    slices = np.flatnonzero(counts >= config.min_lung_pixels)
    if slices.size:
        # a slice samples the anatomy at its centre: the base lies within the half slice below the first lung
        # slice, the apex within the half slice above the last
        z_base = float(zs[slices[0]] - 0.5 * sz) - config.base_below_visible_mm
        z_apex = float(zs[slices[-1]] + 0.5 * sz)
        ext = np.abs(xs - x_mid)[np.flatnonzero((lung & lateral[None, None, :]).any(axis=(0, 1)))]
        half_width_cavity = float(ext.max() + 0.5 * sx)
        # the chest wall is as thick at the side as at the front and back (an ellipse inside an ellipse)
        half_depth = max(half_d - (half_w - half_width_cavity), 1.0)
    else:
        z_base, z_apex, half_depth = float(zs[0]), float(zs[-1]), max(half_d, 1.0)
    kernel, noise = scanner_blur(hu[::3], body[::3], sx, config)  # every third slice is plenty of noise
    return ChestGeometry(x_mid, y_mid, half_depth, z_base, z_apex, kernel, noise, _filled_lungs(lung, lateral))


_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


def _from_border(mask: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` connected, within their slice, to the slice's edge (one labelling for all slices)."""
    lab, _ = ndi.label(mask, structure=_IN_PLANE)
    edge = np.unique(np.concatenate([lab[:, 0].ravel(), lab[:, -1].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]))
    return np.isin(lab, edge[edge > 0])


def _filled_lungs(lung: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """Each slice's lung regions with holes (nodules, vessels) filled, so a nodule counts as inside its lung."""
    out = ~_from_border(~lung)
    out[:, :, ~lateral] &= lung[:, :, ~lateral]  # no filling across the midline (trachea, mediastinal air)
    return out


def _lag_correlation(sigma_px: float, lag: int = 1) -> float:
    """Correlation at ``lag`` pixels of white noise blurred by a discrete Gaussian (truncated at 3 sigma)."""
    radius = max(1, int(3.0 * sigma_px + 0.5))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    return float((k[:-lag] * k[lag:]).sum() / (k * k).sum()) if lag < len(k) else 0.0


def scanner_blur(hu: np.ndarray, body: np.ndarray, pixel_mm: float, config: ChestConfig = ChestConfig()
                 ) -> tuple[float, float]:
    """In-plane kernel sigma (mm) and noise SD (HU) from noise in flat soft tissue inside the body.

    Flat means: soft-tissue HU, and far (3 pixels) from any edge, so neighbouring differences are noise alone.
    For white noise blurred by a Gaussian of sigma s pixels, adjacent pixels correlate by rho(s); rho comes from
    the variance of neighbour differences over the variance of distant differences (4 pixels apart).
    Falls back to (0.7 mm, 20 HU) when there is too little flat tissue."""
    smooth = ndi.uniform_filter(hu.astype(np.float32), size=(1, 5, 5))
    flat = body & (smooth > -60) & (smooth < 140)
    flat = ndi.binary_erosion(flat, structure=np.ones((1, 7, 7), bool))
    d1: list[np.ndarray] = []
    d4: list[np.ndarray] = []
    for lag, out in ((1, d1), (4, d4)):
        for axis in (1, 2):
            a = np.moveaxis(hu, axis, -1).astype(np.float32)
            m = np.moveaxis(flat, axis, -1)
            both = m[..., :-lag] & m[..., lag:]
            out.append((a[..., lag:] - a[..., :-lag])[both])
    d1a, d4a = np.concatenate(d1), np.concatenate(d4)
    if d1a.size < 200 or d4a.size < 200:
        return 0.7, 20.0
    # robust variances (MAD), so a stray edge does not dominate
    v1 = (1.4826 * np.median(np.abs(d1a - np.median(d1a)))) ** 2
    v4 = (1.4826 * np.median(np.abs(d4a - np.median(d4a)))) ** 2
    rho = 1.0 - v1 / max(v4, 1e-6)  # v_lag = 2 var (1 - rho_lag), rho_4 ~ 0 for these kernels
    grid = np.linspace(config.kernel_min_mm, config.kernel_max_mm, 121)
    rhos = np.array([_lag_correlation(g / pixel_mm) for g in grid])
    kernel = float(np.interp(rho, rhos, grid)) if rhos[0] < rhos[-1] else 0.7
    noise = float(np.sqrt(0.5 * v4 / max(1.0 - _lag_correlation(kernel / pixel_mm, 4), 1e-3)))
    return kernel, noise


def lobe_of(point_lps: tuple[float, float, float] | np.ndarray, chest: ChestGeometry,
            config: ChestConfig = ChestConfig()) -> str:
    """The lobe (one of ``LOBES``) a point in the lungs most likely lies in, from its place in the chest.

    Rule: right lung when left of the midline in the image (patient's right: LPS x below the body centre). Height is
    measured as a fraction h of the lung height (base 0, apex 1) and depth as d from -1 (front of the pleural
    cavity) to +1 (back). The oblique (major) fissure runs from ``oblique_front`` of the height at the front to
    ``oblique_back`` at the back: below it is the lower lobe. On the right, above the oblique fissure, the
    horizontal (minor) fissure at ``horizontal`` of the height separates the middle lobe (below) from the upper.

    Limits: fissures are not detected, so a nodule within a few percent of the lung height (a centimetre or so) of
    where the typical fissure runs can be given the neighbouring lobe; real fissures are curved, incomplete and vary
    more than this flat model; an accessory fissure, a lobectomy or a collapsed lobe are not recognised; a point
    outside the lungs still gets the lobe its position implies.
    """
    x, y, z = (float(v) for v in point_lps)
    h = (z - chest.z_base) / max(chest.z_apex - chest.z_base, 1.0)
    d = float(np.clip((y - chest.y_mid) / chest.half_depth_mm, -1.0, 1.0))
    oblique = config.oblique_front + (config.oblique_back - config.oblique_front) * 0.5 * (d + 1.0)
    if x < chest.x_mid:
        return "RLL" if h < oblique else ("RML" if h < config.horizontal else "RUL")
    return "LLL" if h < oblique else "LUL"


__all__ = ["LOBES", "ChestConfig", "ChestGeometry", "chest_geometry", "lobe_of", "scanner_blur"]
