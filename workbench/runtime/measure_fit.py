"""Fit a partial-volume model of the nodule to the CT: sizes below the voxel, unbiased by blur and slice thickness.

Why a model fit, not a threshold: a 5 mm nodule spans three or four pixels and one or two slices. Any threshold on
such a blurred blob measures the threshold as much as the nodule (a -600 HU cut shrinks a faint ground-glass
nodule and swells a solid one), and slice-thickness averaging lowers the peak of small nodules so much that their
density, hence their type, cannot be read off. Modelling how the scanner makes the image undoes both:

    image(p) = background + contrast * blur( slab_average( inside_ellipsoid ) )(p)        (+ a solid core)

- ``inside_ellipsoid``: an ellipsoid with one axis along the scanner's z (axial slices cut it in ellipses) and the
  other two turned by an angle in the axial plane; its boundary ramps over one pixel (area partial volume).
- ``slab_average``: each slice averages the object over its thickness (contiguous slices: thickness = spacing).
- ``blur``: the reconstruction kernel, a Gaussian in-plane, its width estimated from the series' own noise
  (``measure_chest.scanner_blur``).

Least squares with a bounded robust (arctan) loss fits centre, three semi-axes, angle, contrast and background, so vessels
and spicules touching the nodule (far brighter than the model predicts there) barely pull on it. A weak prior keeps
the three axes alike when the data cannot tell them apart (nodules a few voxels wide). Ground-glass nodules get a
second fit with a spherical solid component inside; its contrast is that of soft tissue over the ground glass.
Scale: one nodule takes ~0.1 s (a 5 mm nodule) to a few seconds (a 40 mm mass) on one core.

Arrays are canonical (z, y, x) with spacing (z, y, x) mm, as in ``measure_chest``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import least_squares

try:  # a dependency of scikit-learn, so present; without it the fit is merely slower on a busy machine
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


@dataclass(frozen=True)
class FitConfig:
    """How the nodule model is seeded and fitted; HU levels are of typical CT, not of any one scanner."""

    search_mm: float = 2.0  # the densest point within this distance of the mark seeds the fit
    min_contrast_hu: float = 60.0  # a seed less than this above the lung around it is not a nodule
    margin_mm: float = 4.0  # voxels up to region_factor x the seed radius + this much take part in the fit
    shift_factor: float = 0.15  # the fitted centre stays within this times the seed radius plus shift_mm of the seed
    shift_mm: float = 0.5
    region_factor: float = 1.3  # ... the fit region's radius is this times the seed radius plus margin_mm
    seed_range: float = 1.6  # the fitted sphere's radius stays within this factor of the seed radius
    # the ellipsoid's semi-axes stay within this factor of the sphere's radius: 2 lets an elongated nodule (7 x 4 mm
    # semi-axes) be measured; on the cohort's spheres 1.35 to 2 measured alike (train split)
    axis_range: float = 2.0
    max_core_hu: float = 200.0  # densest nodule core modelled: calcified nodules (denser) are measured too small
    max_radius_mm: float = 40.0
    min_radius_mm: float = 0.4
    sub_slices: int = 6  # samples across a slice's thickness for the slab average
    roundness_sd: float = 0.15  # prior SD of log(axis / other axis): nodules are roughly round
    loss_scale: float = 2.5  # knee of the bounded robust loss, in noise SDs: a vessel voxel costs the same
    # however badly the nodule model misses it
    texture_hu: float = 30.0  # lung parenchyma's own texture, added to the scanner noise as residual scale
    solid_hu: float = 30.0  # soft tissue: the density of a solid nodule or a part-solid nodule's solid core
    solid_seed_sd: float = 4.0  # a solid core is sought when the smoothed residual peaks this many noise SDs up
    max_iterations: int = 60
    # A nodule fitted fainter than soft tissue is refitted at soft-tissue density; that fit is kept unless its cost
    # is this much higher (None: never). Near the voxel size only density x volume can be read, and a small solid
    # nodule fits nearly as well as a larger, fainter one.
    solid_alternative_cost: float | None = 2.0
    # ... and kept whatever its cost when the faint fit is not uniform inside (median |residual| over its inner
    # voxels above this many residual SDs): a large faint ellipsoid laid over a vessel and the lung beside it. Chosen
    # on the synthetic train split: true ground glass reads 0.2-0.9 there, the vessel-straddling fits 1.0-2.1.
    mixture_sd: float | None = 1.0


@dataclass(frozen=True)
class Ellipsoid:
    """A fitted nodule (or its solid core): LPS-aligned canonical frame, mm."""

    center_zyx: tuple[float, float, float]  # mm from the ROI's voxel (0, 0, 0), canonical (z, y, x)
    semi_axes_mm: tuple[float, float, float]  # in-plane a, in-plane b (a turned by ``angle`` from x), z
    angle: float  # radians, from +x towards +y
    contrast_hu: float  # over background

    @property
    def volume_mm3(self) -> float:
        a, b, c = self.semi_axes_mm
        return 4.0 / 3.0 * math.pi * a * b * c


@dataclass(frozen=True)
class NoduleFit:
    """What the fit found: the nodule, its background, the solid core (None: none found or not sought)."""

    nodule: Ellipsoid
    background_hu: float
    solid: Ellipsoid | None
    roi_start: tuple[int, int, int]  # canonical voxel index of the ROI's (0, 0, 0)
    occupancy: np.ndarray  # (z, y, x) over the ROI: share of each voxel inside the fitted nodule (no blur)
    cost: float  # robust cost per fitted voxel (about 0.5 for a good fit)
    merged: bool = False  # the faint fit straddled dense and aerated tissue (``FitConfig.mixture_sd``): uncertain


@dataclass
class _Roi:
    data: np.ndarray  # (z, y, x) HU, float64
    weight: np.ndarray  # bool: voxels that take part in the fit
    start: tuple[int, int, int]
    spacing: tuple[float, float, float]
    z: np.ndarray  # voxel-centre coordinates, mm from the ROI's voxel (0, 0, 0)
    y: np.ndarray
    x: np.ndarray


class NoNodule(Exception):
    """Raised when no nodule is found at the mark; ``measure.py`` turns it into a CaseError naming the case."""


# ------------------------------------------------------------------------------------------------- the model


def occupancy(center: np.ndarray, axes: np.ndarray, angle: float, z: np.ndarray, y: np.ndarray, x: np.ndarray,
              spacing: tuple[float, float, float], sub_slices: int) -> np.ndarray:
    """Share of each voxel inside the ellipsoid, slab-averaged over the slice thickness; (len(z), len(y), len(x)).

    In-plane the boundary ramps over one pixel along its in-plane normal (what a pixel's area sees of a straight
    edge); across slices the average of ``sub_slices`` thin sections does the partial volume."""
    sz, sy, _ = spacing
    a, b, c = (float(v) for v in axes)
    offs = ((np.arange(sub_slices) + 0.5) / sub_slices - 0.5) * sz
    dz = (z[:, None] + offs[None, :] - center[0])[:, :, None, None]  # (nz, S, 1, 1)
    dy = (y - center[1])[None, None, :, None]
    dx = (x - center[2])[None, None, None, :]
    cos, sin = math.cos(angle), math.sin(angle)
    u = (cos * dx + sin * dy) / a  # (1, 1, ny, nx)
    v = (-sin * dx + cos * dy) / b
    w = dz / c  # (nz, S, 1, 1)
    gxy = (u / a) ** 2 + (v / b) ** 2
    gz = (w / c) ** 2
    grad = np.sqrt(gxy + gz)
    f = u * u + v * v + w * w - 1.0
    sd = np.maximum(f / np.maximum(2.0 * grad, 1e-9), -min(a, b, c))  # first-order signed distance, mm
    ramp = np.maximum(sy * np.sqrt(gxy) / np.maximum(grad, 1e-9), 0.25 * sy)
    occ = np.clip(0.5 - sd / ramp, 0.0, 1.0)
    return occ.mean(axis=1)


def _blur(occ: np.ndarray, kernel_sigma_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    return ndi.gaussian_filter(occ, (0.0, kernel_sigma_mm / spacing[1], kernel_sigma_mm / spacing[2]), mode="constant")


# ------------------------------------------------------------------------------------------------ the seed


def _cut(hu: np.ndarray, lung: np.ndarray, center_vox: np.ndarray, half_mm: float, spacing) -> _Roi:
    half = np.ceil(half_mm / np.asarray(spacing)).astype(int)
    c = np.round(center_vox).astype(int)
    lo = np.maximum(c - half, 0)
    hi = np.minimum(c + half + 1, hu.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    data = hu[sl].astype(np.float64)
    z, y, x = (np.arange(n) * s for n, s in zip(data.shape, spacing, strict=True))
    return _Roi(data, lung[sl].copy(), (int(lo[0]), int(lo[1]), int(lo[2])), tuple(spacing), z, y, x)


def _ball(roi: _Roi, center_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    d2 = ((roi.z[:, None, None] - center_mm[0]) ** 2 + (roi.y[None, :, None] - center_mm[1]) ** 2
          + (roi.x[None, None, :] - center_mm[2]) ** 2)
    return d2 <= radius_mm * radius_mm


def _blob_scale(x: np.ndarray, roi: _Roi, candidates: np.ndarray, sigmas: np.ndarray) -> tuple[int, float, float]:
    """Best (candidate, sigma, response) of the scale-normalised Laplacian of Gaussian, -sigma^2 LoG, at the
    candidate points (mm, ROI frame). A sphere of radius r answers most at sigma = r / sqrt(3), whatever touches
    it; a vessel of the same width answers less. Each kernel is made to sum to zero on the voxel grid (a small
    sigma on 2.5 mm slices would otherwise answer to the background level)."""
    best = (0, float(sigmas[0]), -np.inf)
    for s in sigmas:
        reach = 3.0 * s
        for i, c in enumerate(candidates):
            lo = np.searchsorted(roi.z, c[0] - reach), np.searchsorted(roi.y, c[1] - reach), np.searchsorted(roi.x, c[2] - reach)
            hi = np.searchsorted(roi.z, c[0] + reach), np.searchsorted(roi.y, c[1] + reach), np.searchsorted(roi.x, c[2] + reach)
            dz, dy, dx = roi.z[lo[0]:hi[0]] - c[0], roi.y[lo[1]:hi[1]] - c[1], roi.x[lo[2]:hi[2]] - c[2]
            r2 = dz[:, None, None] ** 2 + dy[None, :, None] ** 2 + dx[None, None, :] ** 2
            g = np.exp(-r2 / (2.0 * s * s))
            k = (3.0 - r2 / (s * s)) * g
            k -= g * (k.sum() / g.sum())
            resp = float((k * x[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]).sum()) / float(g.sum())
            if resp > best[2]:
                best = (i, float(s), resp)
    return best


def _seed(hu: np.ndarray, lung: np.ndarray, center_vox: np.ndarray, spacing, config: FitConfig
          ) -> tuple[np.ndarray, float, float, float]:
    """Seed centre (canonical voxel), radius (mm), contrast and background (HU).

    Background: the median of the aerated lung around the mark. Centre and radius: the strongest blob answer
    (``_blob_scale``) at the voxels within ``search_mm`` of the mark. Contrast: the smoothed density at that
    centre over the background."""
    sp = np.asarray(spacing, float)
    roi = _cut(hu, lung, center_vox, 2.0 * config.max_radius_mm + config.search_mm, spacing)
    aerated = roi.data[roi.weight & (roi.data < -600.0)]
    bg = float(np.median(aerated)) if aerated.size > 50 else -850.0
    sm = ndi.gaussian_filter(roi.data, 0.8 / sp)
    mark = (np.asarray(center_vox) - roi.start) * sp
    at_mark = tuple(int(v) for v in np.clip(np.round(mark / sp), 0, np.array(sm.shape) - 1))
    if sm[at_mark] - bg < config.min_contrast_hu:
        raise NoNodule(f"nothing denser than the lung at the mark ({sm[at_mark]:.0f} HU, lung around {bg:.0f} HU)")
    # anything denser than the mark (a vessel beside a ground-glass nodule, bone) counts only as dense as the mark
    x = np.clip(roi.data - bg, -200.0, 1.25 * (sm[at_mark] - bg))
    grid = np.stack(np.meshgrid(*(np.arange(-2, 3) * s for s in sp), indexing="ij"), -1).reshape(-1, 3)
    candidates = mark + grid[np.linalg.norm(grid, axis=1) <= max(config.search_mm, 0.5 * float(sp.max()))]
    sigmas = np.geomspace(0.8, config.max_radius_mm / math.sqrt(3.0), 24)
    i, sigma, _ = _blob_scale(x, roi, candidates, sigmas)
    center_mm = candidates[i]
    radius = float(np.clip(sigma * math.sqrt(3.0), 1.0, config.max_radius_mm))
    core = tuple(int(v) for v in np.clip(np.round(center_mm / sp), 0, np.array(sm.shape) - 1))
    contrast = max(float(sm[core]) - bg, config.min_contrast_hu)
    return center_mm / sp + roi.start, radius, contrast, bg


# ------------------------------------------------------------------------------------------------- the fit
# Parameter vector of the nodule: [centre z, y, x (mm, ROI frame), log a, log b, log c, angle, contrast, background];
# a solid core appends [centre z, y, x, log radius].


def _model(p: np.ndarray, roi: _Roi, kernel: float, config: FitConfig) -> np.ndarray:
    occ = occupancy(p[0:3], np.exp(p[3:6]), p[6], roi.z, roi.y, roi.x, roi.spacing, config.sub_slices)
    model = p[8] + p[7] * _blur(occ, kernel, roi.spacing)
    if len(p) > 9:  # the solid core replaces ground glass inside it
        core = occupancy(p[9:12], np.exp(np.full(3, p[12])), 0.0, roi.z, roi.y, roi.x, roi.spacing, config.sub_slices)
        model = model + (config.solid_hu - p[8] - p[7]) * _blur(core, kernel, roi.spacing)
    return model


def _robust(r: np.ndarray, knee: float) -> np.ndarray:
    """Residuals whose squares sum to a bounded (arctan) robust cost: ~r near zero, at most knee * sqrt(pi / 2).
    Done here rather than by ``least_squares(loss=...)``, which would also bound the prior terms."""
    z = (r / knee) ** 2
    return np.sign(r) * knee * np.sqrt(np.arctan(z))


def _residuals(p: np.ndarray, roi: _Roi, idx: tuple[np.ndarray, ...], kernel: float, scale: float,
               config: FitConfig) -> np.ndarray:
    r = _robust((_model(p, roi, kernel, config)[idx] - roi.data[idx]) / scale, config.loss_scale)
    la, lb, lc = p[3:6]
    terms = [r, np.array([la - lb, la - lc, lb - lc]) / config.roundness_sd]
    if len(p) > 9:  # the solid core must lie inside the nodule: a steep penalty on any part outside
        outside = float(np.linalg.norm(p[9:12] - p[0:3])) + math.exp(p[12]) - math.exp(float(np.min(p[3:6])))
        terms.append(np.array([max(0.0, outside) / 0.05]))
    return np.concatenate(terms)


def _sphere(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], q[1], q[2], q[3], q[3], q[3], 0.0, q[4], q[5]])


def _solve(fun, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, config: FitConfig):
    x0 = np.clip(x0, lo + 1e-6, hi - 1e-6)
    return least_squares(fun, x0, bounds=(lo, hi), diff_step=1e-3, max_nfev=config.max_iterations * (len(x0) + 1))


def fit_nodule(hu: np.ndarray, lung: np.ndarray, center_vox: np.ndarray, spacing: tuple[float, float, float],
               kernel_sigma_mm: float, noise_hu: float, config: FitConfig = FitConfig()) -> NoduleFit:
    """Fit the partial-volume nodule model (module docstring) around ``center_vox``.

    Three steps: a sphere from two starting sizes (the seed's and a smaller one: a small nodule beside a vessel
    reads large to the seed), the better one refined into an ellipsoid, then, for ground glass, a solid core.

    Args:
        hu: canonical (z, y, x) HU volume.
        lung: bool like ``hu``: the lungs with their contents (the fit ignores voxels outside, e.g. chest wall).
        center_vox: the mark, canonical voxel coordinates (float).
        spacing: (z, y, x) mm.
        kernel_sigma_mm, noise_hu: the series' in-plane blur and noise (``measure_chest.scanner_blur``).

    Raises:
        NoNodule: nothing nodule-like at the mark.
    """
    # One BLAS thread: the Jacobians are a few thousand rows by 9-13 columns, and a threaded SVD of that is several
    # times slower than a single-threaded one (more so on a busy machine).
    with threadpool_limits(limits=1, user_api="blas") if threadpool_limits else contextlib.nullcontext():
        return _fit(hu, lung, center_vox, spacing, kernel_sigma_mm, noise_hu, config)


def _fit(hu: np.ndarray, lung: np.ndarray, center_vox: np.ndarray, spacing: tuple[float, float, float],
         kernel_sigma_mm: float, noise_hu: float, config: FitConfig) -> NoduleFit:
    sp = np.asarray(spacing, float)
    seed_vox, r0, c0, bg0 = _seed(hu, lung, center_vox, spacing, config)
    reach = config.region_factor * r0 + config.margin_mm
    roi = _cut(hu, lung, seed_vox, reach + 3.0 * kernel_sigma_mm, spacing)
    c_mm = (seed_vox - roi.start) * sp
    region = _ball(roi, c_mm, reach) & roi.weight
    if region.sum() < 10:
        raise NoNodule("the mark is not inside the lungs")
    idx = np.nonzero(region)
    scale = math.hypot(noise_hu, config.texture_hu)
    c_hi = config.max_core_hu - bg0 + 100.0
    r_lo, r_hi = max(config.min_radius_mm, r0 / config.seed_range), min(config.max_radius_mm, r0 * config.seed_range)
    shift = config.shift_factor * r0 + config.shift_mm
    lo = np.array([*(c_mm - shift), math.log(r_lo), 20.0, bg0 - 300.0])
    hi = np.array([*(c_mm + shift), math.log(r_hi), c_hi, bg0 + 300.0])

    def sphere_residuals(q: np.ndarray) -> np.ndarray:
        return _residuals(_sphere(q), roi, idx, kernel_sigma_mm, scale, config)

    best = None
    for r_start in (r0, r0 / config.seed_range ** 0.5):
        res = _solve(sphere_residuals, np.array([*c_mm, math.log(r_start), c0, bg0]), lo, hi, config)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    p0 = _sphere(best.x)
    span = math.log(config.axis_range)
    lo9 = np.array([*lo[:3], *[p0[3] - span] * 3, -math.pi, lo[4], lo[5]])
    hi9 = np.array([*hi[:3], *[p0[3] + span] * 3, math.pi, hi[4], hi[5]])

    def ellipsoid_residuals(p: np.ndarray) -> np.ndarray:
        return _residuals(p, roi, idx, kernel_sigma_mm, scale, config)

    res = _solve(ellipsoid_residuals, p0, lo9, hi9, config)
    p, cost = res.x, res.cost
    mixed = False
    if config.solid_alternative_cost is not None and p[8] + p[7] < config.solid_hu - 100.0:
        alt = _fit_at_solid_density(p, roi, idx, kernel_sigma_mm, scale, config, lo9, hi9)
        mixed = config.mixture_sd is not None and _inner_spread(p, roi, kernel_sigma_mm, scale, config) > config.mixture_sd
        if alt[1] <= cost + config.solid_alternative_cost or mixed:
            p, cost = alt
    solid = None
    if p[8] + p[7] < 0.5 * (config.solid_hu + p[8]):  # ground glass (below half-way to soft tissue): a solid core?
        found = _fit_solid(p, roi, idx, kernel_sigma_mm, scale, noise_hu, config, lo9, hi9)
        if found is not None:
            p, cost = found
            rs = math.exp(p[12])
            solid = Ellipsoid((float(p[9]), float(p[10]), float(p[11])), (rs, rs, rs), 0.0, config.solid_hu - p[8])
    a, b, c = (float(v) for v in np.exp(p[3:6]))
    nodule = Ellipsoid((float(p[0]), float(p[1]), float(p[2])), (a, b, c), float(p[6]), float(p[7]))
    occ = occupancy(p[0:3], np.exp(p[3:6]), p[6], roi.z, roi.y, roi.x, roi.spacing, config.sub_slices)
    return NoduleFit(nodule, float(p[8]), solid, roi.start, occ, float(cost) / len(idx[0]), merged=mixed)


def _inner_spread(p: np.ndarray, roi: _Roi, kernel: float, scale: float, config: FitConfig) -> float:
    """Median |residual| / ``scale`` over the voxels wholly inside the fitted nodule (0 when there are too few): about
    0.7 for a uniform nodule, several for one laid over dense and aerated tissue alike."""
    occ = occupancy(p[0:3], np.exp(p[3:6]), p[6], roi.z, roi.y, roi.x, roi.spacing, config.sub_slices)
    inner = (occ > 0.9) & roi.weight
    if inner.sum() < 8:
        return 0.0
    return float(np.median(np.abs(roi.data[inner] - _model(p, roi, kernel, config)[inner]))) / scale


def _fit_at_solid_density(p: np.ndarray, roi: _Roi, idx: tuple[np.ndarray, ...], kernel: float, scale: float,
                          config: FitConfig, lo9: np.ndarray, hi9: np.ndarray) -> tuple[np.ndarray, float]:
    """Refit the ellipsoid with its density fixed at soft tissue (``solid_hu``), starting from the same density x
    volume as ``p``; returns the full parameter vector and its cost."""
    keep = [0, 1, 2, 3, 4, 5, 6, 8]

    def full(q: np.ndarray) -> np.ndarray:
        return np.concatenate([q[:7], [config.solid_hu - q[7]], q[7:]])

    shrink = math.log(max(p[7], 1.0) / max(config.solid_hu - p[8], 1.0)) / 3.0
    q0 = np.concatenate([p[:3], p[3:6] + shrink, p[6:7], p[8:9]])
    lo, hi = lo9[keep].copy(), hi9[keep].copy()
    lo[3:6] = np.minimum(lo[3:6] + shrink, q0[3:6] - 0.2)
    lo[3:6] = np.maximum(lo[3:6], math.log(config.min_radius_mm))
    hi[3:6] = np.maximum(q0[3:6] + 0.2, lo[3:6] + 0.1)

    def residuals(q: np.ndarray) -> np.ndarray:
        return _residuals(full(q), roi, idx, kernel, scale, config)

    res = _solve(residuals, q0, lo, hi, config)
    return full(res.x), float(res.cost)


def _fit_solid(p: np.ndarray, roi: _Roi, idx: tuple[np.ndarray, ...], kernel: float, scale: float, noise_hu: float,
               config: FitConfig, lo9: np.ndarray, hi9: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Refit a ground-glass nodule with a spherical solid core seeded where the smoothed residual peaks inside it;
    None when the residual does not peak (no core to see)."""
    occ = occupancy(p[0:3], np.exp(p[3:6]), p[6], roi.z, roi.y, roi.x, roi.spacing, config.sub_slices)
    resid = ndi.gaussian_filter(roi.data - _model(p, roi, kernel, config), 0.8 / np.asarray(roi.spacing))
    inside = occ > 0.5
    if not inside.any():
        return None
    where = np.unravel_index(np.argmax(np.where(inside, resid, -np.inf)), resid.shape)
    if resid[where] < config.solid_seed_sd * noise_hu:
        return None
    c_mm = np.array(where, float) * np.asarray(roi.spacing)
    r_max = float(np.exp(p[3:6]).max())
    q0 = np.concatenate([p, c_mm, [math.log(min(1.0, 0.5 * r_max))]])
    lo = np.concatenate([lo9, c_mm - 3.0, [math.log(0.3)]])
    hi = np.concatenate([hi9, c_mm + 3.0, [math.log(max(r_max, 0.31))]])

    def residuals(q: np.ndarray) -> np.ndarray:
        return _residuals(q, roi, idx, kernel, scale, config)

    res = _solve(residuals, q0, lo, hi, config)
    return res.x, float(res.cost)


__all__ = ["Ellipsoid", "FitConfig", "NoNodule", "NoduleFit", "fit_nodule", "occupancy"]
