"""A synthetic chest CT in Hounsfield units: anatomy, emphysema, nodules, then the scanner's blur and noise.

The phantom has to look enough like a chest that a CT encoder learns nodules, not phantom artefacts: body wall,
ribs, spine, mediastinum and heart, an airway, two lungs with lobes and branching vessels (which, cut across,
look like small nodules, as in real scans), emphysema, and nodules with partial volume, spiculation and
ground glass. It also has to be fast: 2000 cases on two cores, so about half a second a case.

Three resolution levels make that possible:
  F (full)   (n, rows, cols)          what is returned; nodules, noise and the kernel blur are made here
  H (half)   (n, rows/2, cols/2)      anatomy, with soft (partial-volume) edges; upsampled linearly to F
  C (coarse) (n/2, rows/4, cols/4)    smooth random fields (vessels, emphysema, texture), inside the lung box
The body wall and the spine are drawn once in 2-D (discs aside), the rib cage per slice but only over the
band of pixels it can reach. Coordinates are LPS millimetres (+x patient left, +y posterior, +z superior); arrays are
indexed (slice, row, column) = (z, y, x), slice 0 the most inferior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.special import ndtri

from workbench.cohort.spec import LOBES, NODULE_TYPES, NoduleSpec, ScannerProfile
from workbench.errors import CohortError

# HU of each nodule type's core before the site's hu_offset. A part-solid nodule is ground glass at this value
# with a smaller, eccentric solid component at NODULE_HU["solid"] (see _solid_component).
NODULE_HU: dict[str, float] = {"solid": 30.0, "part_solid": -500.0, "non_solid": -650.0}

TISSUE_HU: dict[str, float] = {
    "air": -1000.0,
    "lung": -865.0,  # parenchyma (mean; texture and a posterior gravity gradient vary it by a few tens)
    "emphysema": -975.0,  # low-attenuation areas
    "fat": -100.0,
    "muscle": 45.0,
    "soft_tissue": 40.0,  # airway wall, mediastinal organs
    "blood": 40.0,  # unenhanced heart, great vessels, pulmonary vessels
    "liver": 55.0,
    "cartilage": 120.0,  # costal cartilage
    "marrow": 250.0,  # trabecular bone: vertebral bodies
    "bone": 700.0,  # cortical bone; ribs and posterior vertebral elements read a partial-volume mix
}

_PAD_HU = -1024  # outside the reconstruction circle, as scanners pad it
_MARGIN_MM = 3.0  # nodules keep this much lung between their surface and the pleura


@dataclass
class RenderedCT:
    """One rendered chest CT series and where its nodules are."""

    hu: np.ndarray  # int16 (n_slices, rows, cols); slice 0 is the most inferior
    origin_lps: tuple[float, float, float]  # ImagePositionPatient of slice 0, pixel (row 0, col 0)
    pixel_spacing_mm: float
    slice_spacing_mm: float
    nodule_centers_lps: list[tuple[float, float, float]]  # one per input nodule, same order
    index_mask: np.ndarray | None  # bool like hu: voxels of the index nodule (only with return_mask)


# ----------------------------------------------------------------------------------------------- helpers


def _occ(sd: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume occupancy from a signed distance (mm, negative inside): a linear ramp one voxel wide."""
    return np.clip(0.5 - sd * (1.0 / width), 0.0, 1.0).astype(np.float32, copy=False)


def _ellipse_sd(x, y, cx, cy, a, b) -> np.ndarray:
    """First-order signed distance to an axis-aligned ellipse: exact on the boundary and good within a few
    mm of it, which is all a one-voxel soft edge needs (deep inside it is clamped). Semi-axes may be arrays
    (one per slice) that broadcast against x and y."""
    u, v = (x - cx) / a, (y - cy) / b
    f = u * u + v * v - 1.0
    g = 2.0 * np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return np.maximum(f / np.maximum(g, 1e-6), -np.minimum(a, b)).astype(np.float32)


def _ellipsoid_sd(x, y, z, c: tuple[float, float, float], r: tuple[float, float, float], angle: float = 0.0) -> np.ndarray:
    """Like _ellipse_sd for an ellipsoid turned by ``angle`` (radians) about the z axis."""
    cos, sin = math.cos(angle), math.sin(angle)
    dx, dy = x - c[0], y - c[1]
    u, v, w = (cos * dx + sin * dy) / r[0], (-sin * dx + cos * dy) / r[1], (z - c[2]) / r[2]
    f = u * u + v * v + w * w - 1.0
    g = 2.0 * np.sqrt((u / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2)
    return np.maximum(f / np.maximum(g, 1e-6), -min(r)).astype(np.float32)


def _capsule_sd(x, y, z, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance to a tube of ``radius`` around the segment a-b (airways, great vessels)."""
    ab = b - a
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / float(ab @ ab)
    t = np.clip(t, 0.0, 1.0)
    d2 = (x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2
    return (np.sqrt(d2) - radius).astype(np.float32)


def _pair_mean(v: np.ndarray) -> np.ndarray:
    """Voxel centres of a level twice as coarse: each coarse voxel covers two fine ones (the last may overhang)."""
    if len(v) % 2:
        v = np.append(v, 2 * v[-1] - v[-2])
    return 0.5 * (v[0::2] + v[1::2])


def _up2(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Linear 2x upsampling along one axis with half-voxel centres (the inverse of _pair_mean's grid)."""
    n = a.shape[axis]

    def s(sl: slice) -> tuple[slice, ...]:
        idx = [slice(None)] * a.ndim
        idx[axis] = sl
        return tuple(idx)

    shape = list(a.shape)
    shape[axis] = 2 * n
    out = np.empty(shape, np.float32)
    even, odd = out[s(slice(0, None, 2))], out[s(slice(1, None, 2))]
    np.multiply(a, 0.75, out=even)
    np.multiply(a, 0.75, out=odd)
    even[s(slice(1, None))] += 0.25 * a[s(slice(None, -1))]
    even[s(slice(0, 1))] += 0.25 * a[s(slice(0, 1))]
    odd[s(slice(None, -1))] += 0.25 * a[s(slice(1, None))]
    odd[s(slice(-1, None))] += 0.25 * a[s(slice(-1, None))]
    return out[s(slice(0, n_out))]


def _down2_mean(a: np.ndarray) -> np.ndarray:
    """Block mean over 2x2x2 (edge-padded): the coarse level's view of a half-level field."""
    pad = [(0, s % 2) for s in a.shape]
    if any(p[1] for p in pad):
        a = np.pad(a, pad, mode="edge")
    m, r, c = (s // 2 for s in a.shape)
    return a.reshape(m, 2, r, 2, c, 2).mean(axis=(1, 3, 5))


def _lerp(dst: np.ndarray, value, occ: np.ndarray) -> None:
    """Paint ``value`` over ``dst`` in place with partial-volume weight ``occ``."""
    dst += occ * (value - dst)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]) -> np.ndarray:
    """Gaussian random field with unit standard deviation and correlation length ``sigma`` (voxels)."""
    f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    return f / max(float(f.std()), 1e-6)


# ---------------------------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class _Body:
    """One patient's chest, in LPS mm. Every size is drawn per patient so no two chests are alike."""

    x0: float  # body centre
    y0: float
    a_body: float  # skin ellipse semi-axes: left-right, antero-posterior
    b_body: float
    t_fat: float  # subcutaneous fat, chest-wall muscle and rib-ring thickness
    t_mus: float
    t_rib: float
    a_cav: float  # pleural cavity (inner chest wall) semi-axes
    b_cav: float
    z_lo: float  # deepest point of the lungs (posterior costophrenic recess)
    height: float  # lung height, base to apex
    dome: tuple[float, float]  # right, left hemidiaphragm dome height above z_lo
    apex_h: float  # the top part over which each lung tapers to its apex
    z_carina: float
    y_vb: float  # vertebral body centre (y) and radius
    r_vb: float
    heart_c: tuple[float, float, float]
    heart_r: tuple[float, float, float]  # semi-axes along its long axis, across it, and in z
    heart_angle: float  # long axis turned from left-right towards anterior-left (radians)
    fissure: tuple[float, float, float]  # oblique fissure height (fraction) anteriorly, posteriorly; horizontal

    @property
    def z_top(self) -> float:
        return self.z_lo + self.height


def _sample_body(scanner: ScannerProfile, rng: np.random.Generator) -> _Body:
    half_fov = 0.5 * min(scanner.rows, scanner.columns) * scanner.pixel_spacing_mm
    a_body = half_fov * rng.uniform(0.80, 0.92)
    b_body = min(a_body * rng.uniform(0.64, 0.76), 0.80 * half_fov)
    t_fat, t_mus, t_rib = rng.uniform(5, 22), rng.uniform(8, 14), rng.uniform(8, 11)
    wall = t_fat + t_mus + t_rib
    a_cav, b_cav = a_body - wall, b_body - wall
    height = rng.uniform(200, 270)
    z_lo = rng.uniform(-420, -160)
    dome_r = height * rng.uniform(0.22, 0.29)
    dome_l = dome_r - rng.uniform(8, 22)
    x0, y0 = rng.uniform(-6, 6), rng.uniform(-8, 8)
    heart_r = (a_cav * rng.uniform(0.50, 0.58), b_cav * rng.uniform(0.50, 0.58), rng.uniform(42, 50))
    heart_c = (x0 + a_cav * rng.uniform(0.14, 0.24), y0 - b_cav * rng.uniform(0.28, 0.38),
               z_lo + dome_l + 0.70 * heart_r[2])
    return _Body(
        x0=x0, y0=y0, a_body=a_body, b_body=b_body, t_fat=t_fat, t_mus=t_mus, t_rib=t_rib, a_cav=a_cav,
        b_cav=b_cav, z_lo=z_lo, height=height, dome=(dome_r, dome_l), apex_h=height * rng.uniform(0.30, 0.40),
        z_carina=z_lo + height - rng.uniform(85, 110),
        y_vb=y0 + b_body - rng.uniform(62, 74), r_vb=rng.uniform(14, 18),
        heart_c=heart_c, heart_r=heart_r, heart_angle=-rng.uniform(0.5, 0.8),
        fissure=(rng.uniform(0.16, 0.24), rng.uniform(0.75, 0.85), rng.uniform(0.55, 0.61)),
    )


def _med_half_width(body: _Body, y: np.ndarray) -> np.ndarray:
    """Half-width of the mediastinum (mm) from front to back: thin behind the sternum, wide at the hila."""
    yr = (y - body.y0) / body.b_cav
    return np.interp(yr, [-1.0, -0.6, -0.2, 0.3, 0.6, 1.0], [7.0, 12.0, 26.0, 22.0, 24.0, 40.0]).astype(np.float32)


def _cavity_scale(body: _Body, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice factors on the cavity's semi-axes (left-right, front-back): the rib cage narrows towards
    the thoracic inlet, the shoulder muscles take the room."""
    t = np.clip((z - body.z_lo - 0.35 * body.height) / (0.70 * body.height), 0.0, 1.0)
    t = t * t * (3 - 2 * t)
    return (1.0 - 0.22 * t).astype(np.float32), (1.0 - 0.08 * t).astype(np.float32)


def _diaphragm_z(body: _Body, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the hemidiaphragm under (x, y): domes peak antero-laterally, recesses are deepest behind."""
    out = []
    for side, dome in ((-1.0, body.dome[0]), (1.0, body.dome[1])):
        u = (x - (body.x0 + side * 0.45 * body.a_cav)) / (0.80 * body.a_cav)
        v = (y - (body.y0 - 0.10 * body.b_cav)) / (1.10 * body.b_cav)
        out.append(body.z_lo + dome * np.clip(1.0 - u * u - v * v, 0.0, 1.0) ** 0.6)
    return np.where(x < body.x0, out[0], out[1]).astype(np.float32)


def _hila(body: _Body) -> tuple[np.ndarray, np.ndarray]:
    """Right and left hilum: where the vessel trees start."""
    y = body.y0 + 0.02 * body.b_cav
    z = body.z_carina - 22.0
    return (np.array([body.x0 - 38.0, y, z]), np.array([body.x0 + 42.0, y, z - 6.0]))


def _great_vessels(body: _Body) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Aorta, pulmonary arteries and SVC as tube segments (start, end, radius)."""
    hx, hy, hz = body.heart_c
    top = hz + 0.8 * body.heart_r[2]
    arch_z = body.z_carina + 18.0
    y_desc = body.y_vb - body.r_vb - 8.0
    asc0, asc1 = np.array([body.x0 - 8, hy + 10, top - 20]), np.array([body.x0 - 8, hy + 8, arch_z])
    desc0, desc1 = np.array([body.x0 + 20, y_desc, arch_z]), np.array([body.x0 + 20, y_desc, body.z_lo - 30])
    trunk0, trunk1 = np.array([body.x0 + 12, hy - 5, top - 25]), np.array([body.x0 + 18, body.y0 - 5, body.z_carina - 12])
    right_h, left_h = _hila(body)
    svc0, svc1 = np.array([body.x0 - 28, hy + 12, top - 15]), np.array([body.x0 - 26, hy + 16, body.z_top + 20])
    return [
        (asc0, asc1, 14.0), (asc1, desc0, 13.0), (desc0, desc1, 12.0),
        (trunk0, trunk1, 13.0), (trunk1, right_h, 9.0), (trunk1, left_h, 9.0), (svc0, svc1, 10.0),
    ]


def _airway(body: _Body) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Trachea, main and lobar bronchi as tube segments (start, end, lumen radius)."""
    y_tr = body.y_vb - body.r_vb - 24.0
    car = np.array([body.x0 + 2.0, y_tr + 4.0, body.z_carina])
    top = np.array([body.x0, y_tr, body.z_top + 30.0])
    rmb = car + [-22.0, 6.0, -18.0]
    lmb = car + [30.0, 8.0, -28.0]
    bi = rmb + [-6.0, 6.0, -22.0]
    return [
        (top, car, 9.0),
        (car, rmb, 7.0), (rmb, rmb + [-24.0, -4.0, 8.0], 4.5), (rmb, bi, 5.5),
        (bi, bi + [-6.0, -22.0, -10.0], 3.5), (bi, bi + [-10.0, 10.0, -38.0], 4.5),
        (car, lmb, 6.0), (lmb, lmb + [16.0, -14.0, 10.0], 4.5), (lmb, lmb + [8.0, 14.0, -45.0], 4.5),
    ]


def _lobe_of(body: _Body, x, y, z) -> np.ndarray:
    """Lobe index into LOBES for lung points: oblique fissures (lower lobes posterior-inferior), and on the
    right a horizontal fissure separating the middle lobe from the upper."""
    a0, a1, horiz = body.fissure
    zr = (z - body.z_lo) / body.height
    yr = np.clip((y - body.y0) / body.b_cav, -1.0, 1.0)
    lower = zr < a0 + (a1 - a0) * 0.5 * (yr + 1.0)
    right = x < body.x0
    lobe = np.where(right, np.where(lower, 2, np.where(zr < horiz, 1, 0)), np.where(lower, 4, 3))
    return lobe.astype(np.int8)


@dataclass
class _Grids:
    """Voxel-centre coordinates of the three levels (F, H, and C inside the lung box), LPS mm."""

    z: np.ndarray  # (n,)
    yf: np.ndarray  # (rows,)
    xf: np.ndarray  # (cols,)
    yh: np.ndarray  # (rows/2,)
    xh: np.ndarray
    box: tuple[slice, slice]  # the lung box: rows, cols at level H (even start)
    zc: np.ndarray  # (n/2,)  level C, inside the box
    yc: np.ndarray
    xc: np.ndarray


def _grids(body: _Body, scanner: ScannerProfile, origin: tuple[float, float, float], n: int) -> _Grids:
    ps, ss = scanner.pixel_spacing_mm, scanner.slice_spacing_mm
    z = origin[2] + ss * np.arange(n)
    yf = origin[1] + ps * np.arange(scanner.rows)
    xf = origin[0] + ps * np.arange(scanner.columns)
    yh, xh = _pair_mean(yf), _pair_mean(xf)

    def span(v: np.ndarray, lo: float, hi: float) -> slice:
        i0 = max(0, int(np.searchsorted(v, lo)) - 2)
        i0 -= i0 % 2
        i1 = min(len(v), int(np.searchsorted(v, hi)) + 2)
        return slice(i0, i1)

    rows = span(yh, body.y0 - body.b_cav, body.y0 + body.b_cav)
    cols = span(xh, body.x0 - body.a_cav, body.x0 + body.a_cav)
    return _Grids(z=z, yf=yf, xf=xf, yh=yh, xh=xh, box=(rows, cols),
                  zc=_pair_mean(z), yc=_pair_mean(yh[rows]), xc=_pair_mean(xh[cols]))


def _chest_wall_2d(body: _Body, y: np.ndarray, x: np.ndarray, w: float) -> tuple[np.ndarray, np.ndarray]:
    """The slice-invariant part of the body: HU of skin fat, muscle and (full-size) cavity, and the body
    occupancy. The rib cage is painted per slice over it (_paint_cage)."""
    x0, y0 = body.x0, body.y0
    body_occ = _occ(_ellipse_sd(x, y, x0, y0, body.a_body, body.b_body), w)
    hu = np.full(np.broadcast(y, x).shape, TISSUE_HU["air"], np.float32)
    _lerp(hu, TISSUE_HU["fat"], body_occ)
    _lerp(hu, TISSUE_HU["muscle"], _occ(_ellipse_sd(x, y, x0, y0, body.a_body - body.t_fat, body.b_body - body.t_fat), w))
    _lerp(hu, TISSUE_HU["fat"], _occ(_ellipse_sd(x, y, x0, y0, body.a_cav, body.b_cav), w))  # mediastinal fat
    return hu, body_occ


def _paint_cage(hu: np.ndarray, body: _Body, g: _Grids, w: float, rng: np.random.Generator) -> None:
    """The rib cage, per slice, over the band of pixels it can reach (n x ~4000 values, not the volume).

    The cavity narrows towards the top (_cavity_scale) with muscle outside it. Ribs are oblique bands in a
    ring just outside the pleura, higher at the back than at the front, so an axial slice cuts short arcs;
    near the sternum they turn into costal cartilage."""
    x0, y0 = body.x0, body.y0
    sa, sb = _cavity_scale(body, g.z)
    y, x = g.yh[:, None], g.xh[None, :]
    outer = _ellipse_sd(x, y, x0, y0, body.a_cav + body.t_rib, body.b_cav + body.t_rib)
    inner = _ellipse_sd(x, y, x0, y0, body.a_cav * sa.min(), body.b_cav * sb.min())
    rr, cc = np.nonzero((outer < w) & (inner > -w))
    y, x = g.yh[rr][None, :], g.xh[cc][None, :]  # (1, band)
    sd = _ellipse_sd(x, y, x0, y0, body.a_cav * sa[:, None], body.b_cav * sb[:, None])  # (n, band)
    cavity = _occ(sd, w)
    ring = np.clip(_occ(sd - body.t_rib, w) - cavity, 0.0, 1.0)
    radius = np.hypot(x - x0, y - y0) + 1e-3
    front = 0.5 * (1.0 - (y - y0) / radius)  # 0 at the back, 1 at the front
    drop, period, width = rng.uniform(90, 130), rng.uniform(27, 34), rng.uniform(9, 12)
    z_eff = g.z[:, None] + drop * front - rng.uniform(0, period)
    d = np.abs(np.mod(z_eff + 0.5 * period, period) - 0.5 * period)  # (n, band): mm to the nearest rib axis
    rib = np.clip((0.5 * width - d) / float(g.z[1] - g.z[0]) + 0.5, 0.0, 1.0) * ring
    cartilage = np.clip((front - 0.8) / 0.1, 0.0, 1.0) * (np.abs(x - x0) < 40)
    rib_hu = (0.65 * TISSUE_HU["bone"] + 0.35 * TISSUE_HU["marrow"]) * (1 - cartilage) + TISSUE_HU["cartilage"] * cartilage
    val = np.full(sd.shape, TISSUE_HU["muscle"], np.float32)
    _lerp(val, rib_hu.astype(np.float32), rib.astype(np.float32))
    _lerp(val, TISSUE_HU["fat"], cavity)
    hu[:, rr, cc] = val


def _paint_spine_and_sternum(hu: np.ndarray, body: _Body, g: _Grids, w: float, rng: np.random.Generator) -> None:
    """Vertebral bodies (marrow with a cortical rim, discs every ~28 mm), canal and posterior elements; the
    sternum behind the anterior wall over the upper two thirds."""
    y, x = g.yh[:, None], g.xh[None, :]
    x0, yv, rv = body.x0, body.y_vb, body.r_vb
    sd_vb = _ellipse_sd(x, y, x0, yv, rv * 1.1, rv)
    vb_occ, core_occ = _occ(sd_vb, w), _occ(sd_vb + 2.0, w)
    y_canal = yv + rv + 8.0
    canal = _occ(_ellipse_sd(x, y, x0, y_canal, 8.0, 7.0), w)
    post = np.maximum.reduce([
        _occ(_ellipse_sd(x, y, x0, y_canal, 13.0, 12.0), w),  # lamina ring
        _occ(_ellipse_sd(x, y, x0, y_canal + 20.0, 4.5, 14.0), w),  # spinous process
        _occ(_ellipse_sd(x, y, x0 - 22.0, y_canal, 14.0, 5.0), w),  # transverse processes
        _occ(_ellipse_sd(x, y, x0 + 22.0, y_canal, 14.0, 5.0), w),
    ])
    post = np.clip(post - canal, 0.0, 1.0)
    # discs: 6 mm of +80 HU every vertebral level
    level = rng.uniform(26, 30)
    d = np.abs(np.mod(g.z - rng.uniform(0, level), level) - 0.5 * level)
    disc = np.clip((3.0 - (0.5 * level - d)) / (g.z[1] - g.z[0]) + 0.5, 0.0, 1.0).astype(np.float32)
    rows = slice(int(np.searchsorted(g.yh, yv - rv - 4)), int(np.searchsorted(g.yh, y_canal + 40)))
    cols = slice(int(np.searchsorted(g.xh, x0 - 42)), int(np.searchsorted(g.xh, x0 + 42)))
    sub = hu[:, rows, cols]
    vb, core, po, ca = (a[rows, cols][None] for a in (vb_occ, core_occ, post, canal))
    bone_rim = 0.6 * TISSUE_HU["bone"] + 0.4 * TISSUE_HU["marrow"]
    _lerp(sub, bone_rim * (1 - disc[:, None, None]) + 80.0 * disc[:, None, None], vb)
    _lerp(sub, TISSUE_HU["marrow"] * (1 - disc[:, None, None]) + 80.0 * disc[:, None, None], core)
    _lerp(sub, 0.5 * TISSUE_HU["bone"] + 0.5 * TISSUE_HU["marrow"], po)
    _lerp(sub, 20.0, ca)
    hu[:, rows, cols] = sub
    # sternum
    y_front = body.y0 - body.b_cav
    st = _occ(_ellipse_sd(x, y, x0, y_front - 5.0, rng.uniform(12, 18), 6.0), w)
    top = g.z > body.z_lo + 0.35 * body.height
    hu[top] += st[None] * (TISSUE_HU["marrow"] + 100.0 - hu[top])


# ------------------------------------------------------------------------------------------------ lungs


def _lung_occupancy(body: _Body, g: _Grids, w: float) -> np.ndarray:
    """Soft lung mask in the lung box at level H, (n, box_rows, box_cols): the (per-slice) cavity minus
    mediastinum, heart, great vessels and spine, above the diaphragm, tapering to each apex."""
    rows, cols = g.box
    y, x = g.yh[rows][:, None], g.xh[cols][None, :]
    z = g.z[:, None, None]
    x0 = body.x0
    spine = _occ(_ellipse_sd(x, y, x0, body.y_vb + 6.0, body.r_vb + 20.0, body.r_vb + 28.0), w)
    # near the top each lung's section shrinks by s about its apex point (a dome in coronal view)
    z_ap = body.z_top - body.apex_h
    s = np.sqrt(np.clip(1.0 - ((g.z - z_ap).clip(0) / body.apex_h) ** 2, 1e-4, 1.0))[:, None, None]
    ax = np.where(x < x0, x0 - 0.5 * body.a_cav, x0 + 0.5 * body.a_cav)
    ay = body.y0 + 0.20 * body.b_cav
    xs, ys = ax + (x - ax) / s, ay + (y - ay) / s  # (n, rows, cols) scaled coordinates
    sa, sb = _cavity_scale(body, g.z)
    sd = _ellipse_sd(xs, ys, x0, body.y0, body.a_cav * sa[:, None, None], body.b_cav * sb[:, None, None])
    wm = _med_half_width(body, ys)
    sd = np.maximum(sd, np.where(x < x0, xs - x0 + 0.9 * wm, x0 + 1.1 * wm - xs)) * s  # mediastinal border
    lung = _occ(sd, w) * (1.0 - spine)[None] * np.clip((z - _diaphragm_z(body, x, y)[None]) / w + 0.5, 0.0, 1.0)
    lung *= s > 0.03
    lung = lung.astype(np.float32)
    # organs that indent the lungs
    zz, yy, xx = g.z, g.yh[rows], g.xh[cols]
    hc, hr = body.heart_c, body.heart_r
    reach = np.array([max(hr[:2]), max(hr[:2]), hr[2]]) + 6
    sub, (zs, ys, xs) = _sub_box(lung, zz, yy, xx, np.array(hc) - reach, np.array(hc) + reach)
    if sub is not None:
        sub *= 1.0 - _occ(_ellipsoid_sd(xs, ys, zs, hc, hr, body.heart_angle) - 4.0, w)
    for a, b, r in _great_vessels(body):
        sub, (zs, ys, xs) = _sub_box(lung, zz, yy, xx, np.minimum(a, b) - r - 5, np.maximum(a, b) + r + 5)
        if sub is not None:
            sub *= 1.0 - _occ(_capsule_sd(xs, ys, zs, a, b, r + 2.0), w)
    return lung


def _sub_box(vol: np.ndarray, z: np.ndarray, y: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """A writable view of ``vol`` over the LPS box lo..hi (x, y, z order) and the coordinates broadcast to it;
    (None, ...) when the box misses the volume."""
    sl = []
    for v, a, b in ((z, lo[2], hi[2]), (y, lo[1], hi[1]), (x, lo[0], hi[0])):
        i0, i1 = int(np.searchsorted(v, a)), int(np.searchsorted(v, b))
        if i1 <= i0:
            return None, (None, None, None)
        sl.append(slice(i0, i1))
    return vol[tuple(sl)], (z[sl[0]][:, None, None], y[sl[1]][None, :, None], x[sl[2]][None, None, :])


# Vessel generations: (directions per radian K, radius at the hilum mm, decay length mm, starts at mm, ramp mm).
# Coarse K gives a few thick trunks; finer ones start further out, thinner, and read as branches.
_VESSELS = ((3.7, 6.0, 60.0, 0.0, 1.0), (7.5, 3.2, 85.0, 15.0, 25.0), (18.0, 2.0, 120.0, 45.0, 30.0))


def _vessel_fields(body: _Body, g: _Grids, rng: np.random.Generator) -> np.ndarray:
    """Signed distances (mm) to vessel centrelines at level C: (generation, 2, n/2, rows, cols).

    A smooth random field G sampled on the direction from the hilum has zero sets that are cones through the
    hilum; two such cones meet along rays, so a pair of fields draws vessels radiating from the hilum. A slow
    drift with log-distance bends them. Distance to the centreline = rho * angle = rho * G / (K |grad G|).
    """
    z, y, x = g.zc[:, None, None], g.yc[None, :, None], g.xc[None, None, :]
    right_h, left_h = _hila(body)
    hx = np.where(x < body.x0, right_h[0], left_h[0])
    hz = np.where(x < body.x0, right_h[2], left_h[2])
    dx, dy, dz = np.broadcast_arrays(x - hx, y - right_h[1], z - hz)
    rho = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
    u = np.stack([dx / rho, dy / rho, dz / rho]).reshape(3, -1)  # (3, P) directions
    log_rho = np.log1p(rho / 40.0).reshape(1, -1)
    side = np.broadcast_to(x < body.x0, rho.shape).reshape(1, -1)
    out = np.empty((len(_VESSELS), 2) + rho.shape, np.float32)
    for gi, (k, *_) in enumerate(_VESSELS):
        n = int(2 * k + 12)
        for fi in range(2):
            field = _smooth_noise(rng, (n, n, n), (1.5, 1.5, 1.5))
            grad = float(np.mean(np.sqrt(sum(gr * gr for gr in np.gradient(field)))))
            drift = rng.normal(size=(3, 1)) * 1.2
            shift = rng.uniform(-3, 3, size=(3, 1))  # the left tree is not the right one mirrored
            q = (n - 1) / 2.0 + k * u + drift * log_rho + shift * side
            val = ndi.map_coordinates(field, q, order=1, mode="nearest", prefilter=False)
            out[gi, fi] = val.reshape(rho.shape) * (1.0 / (grad * k)) * rho
    return out


def _lung_values(body: _Body, g: _Grids, lung: np.ndarray, emphysema: bool, w: float,
                 rng: np.random.Generator) -> np.ndarray:
    """HU of lung tissue in the lung box at level H: parenchyma with texture and a gravity gradient,
    emphysema patches (mostly upper zones), vessels thinning from hilum to periphery."""
    n = len(g.z)
    rows, cols = g.box
    bh, bw = lung.shape[1:]
    vfields = _vessel_fields(body, g, rng)
    nv = 2 * len(_VESSELS)
    m, ch, cw = vfields.shape[2:]
    texture = _smooth_noise(rng, (m, ch, cw), (0.8, 0.8, 0.8))
    emph = 0.55 * _smooth_noise(rng, (m, ch, cw), (0.6, 0.6, 0.6)) + 0.85 * _smooth_noise(rng, (m, ch, cw), (1.6, 1.6, 1.6))
    stack = np.concatenate([vfields.reshape(nv, m, ch, cw), texture[None], emph[None]])
    for axis, size in ((1, n), (2, bh), (3, bw)):
        stack = _up2(stack, axis, size)
    z, y, x = g.z[:, None, None], g.yh[rows][None, :, None], g.xh[cols][None, None, :]
    yr = np.clip((y - body.y0) / body.b_cav, -1, 1)
    vals = TISSUE_HU["lung"] + 25.0 * yr + 38.0 * stack[nv]  # gravity: dependent lung is denser
    if emphysema:
        zr = np.clip((z - body.z_lo) / body.height, 0, 1)
        lo, hi = rng.uniform(0.10, 0.20), rng.uniform(0.45, 0.70)
        cover = lo + (hi - lo) * zr * zr * (3 - 2 * zr)  # smoothstep: upper-zone predominant
        thr = ndtri(1.0 - cover).astype(np.float32)
        e_occ = np.clip((stack[nv + 1] - thr) / 0.25 + 0.5, 0.0, 1.0)
        _lerp(vals, TISSUE_HU["emphysema"] + 6.0 * stack[nv], e_occ)
    else:
        e_occ = 0.0
    # vessels: radius from the hilum outwards, partial volume for the thin ones
    right_h, left_h = _hila(body)
    hx = np.where(x < body.x0, right_h[0], left_h[0])
    hz = np.where(x < body.x0, right_h[2], left_h[2])
    rho = np.sqrt((x - hx) ** 2 + (y - right_h[1]) ** 2 + (z - hz) ** 2)
    alpha = np.zeros_like(vals)
    for gi, (_, r0, decay, start, ramp) in enumerate(_VESSELS):
        r = r0 * np.exp(-rho / decay) * np.clip((rho - start) / ramp, 0.0, 1.0)
        d = np.sqrt(stack[2 * gi] ** 2 + stack[2 * gi + 1] ** 2)
        r_eff = np.maximum(r, 0.5 * w)
        a = np.clip((r_eff - d) / w + 0.5, 0.0, 1.0) * np.minimum(1.0, (r / r_eff) ** 2)
        np.maximum(alpha, a, out=alpha)
    alpha *= 1.0 - 0.5 * e_occ
    _lerp(vals, TISSUE_HU["blood"], alpha)
    return vals


# ---------------------------------------------------------------------------------------------- nodules


def _solid_component(diameter: float) -> tuple[float, float]:
    """Radius and centre offset (mm) of a part-solid nodule's solid component.

    It spans ~40% of the diameter in large nodules and shrinks in small ones, and it sits eccentrically
    against the wall, so the ground glass still dominates the nodule's core (the radiologist's and the
    tests' reading of 'what type is it')."""
    r = 0.2 * diameter * float(np.clip((diameter - 5.0) / 10.0, 0.3, 1.0))
    return r, max(0.0, 0.5 * diameter - r - 0.5)


@dataclass(frozen=True)
class _Nodule:
    spec: NoduleSpec
    center: np.ndarray  # LPS mm
    spikes: np.ndarray  # (k, 3) unit directions, antipodal pairs
    spike_len: np.ndarray  # (k,) mm
    solid_dir: np.ndarray  # (3,) unit direction of the solid component (part-solid only)

    @property
    def reach(self) -> float:
        return 0.5 * self.spec.diameter_mm + (float(self.spike_len.max()) if len(self.spike_len) else 0.0)


def _nodule_shape(spec: NoduleSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    radius = 0.5 * spec.diameter_mm
    if spec.spiculated:
        pairs = int(np.clip(round(0.8 * spec.diameter_mm), 6, 20))
        d = rng.normal(size=(pairs, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        length = np.clip(radius * rng.uniform(0.5, 1.0, pairs), 3.0, 15.0)
        spikes, spike_len = np.concatenate([d, -d]), np.concatenate([length, length])
    else:
        spikes, spike_len = np.zeros((0, 3)), np.zeros(0)
    sd = rng.normal(size=3)
    return spikes, spike_len, sd / np.linalg.norm(sd)


def _place_nodules(nodules: list[NoduleSpec], body: _Body, g: _Grids, lung: np.ndarray, scanner: ScannerProfile,
                   rng: np.random.Generator) -> list[_Nodule]:
    """Centre each nodule in its lobe, its surface (spikes included where room allows) > 3 mm inside the
    pleura and clear of the other nodules. Distances come from an EDT of the level-C lung mask, less one C
    voxel diagonal for the mask's coarseness and the sub-voxel jitter."""
    lung_c = _down2_mean(lung) > 0.5
    steps = (2 * scanner.slice_spacing_mm, 4 * scanner.pixel_spacing_mm, 4 * scanner.pixel_spacing_mm)
    depth = ndi.distance_transform_edt(lung_c, sampling=steps) - math.sqrt(sum(s * s for s in steps))
    zc, yc, xc = np.meshgrid(g.zc, g.yc, g.xc, indexing="ij")
    lobe = _lobe_of(body, xc, yc, zc)
    order = sorted(range(len(nodules)), key=lambda i: -nodules[i].diameter_mm)
    placed: dict[int, _Nodule] = {}
    for i in order:
        spec = nodules[i]
        spikes, spike_len, solid_dir = _nodule_shape(spec, rng)
        radius = 0.5 * spec.diameter_mm
        in_lobe = lung_c & (lobe == LOBES.index(spec.lobe))
        if not in_lobe.any():
            raise CohortError(f"lobe {spec.lobe} is empty in this phantom (lung height {body.height:.0f} mm)")
        clear = np.full(lung_c.shape, np.inf, np.float32)
        for other in placed.values():
            dist = np.sqrt((xc - other.center[0]) ** 2 + (yc - other.center[1]) ** 2 + (zc - other.center[2]) ** 2)
            np.minimum(clear, dist - other.reach - 3.0, out=clear)
        reach = radius + (float(spike_len.max()) if len(spike_len) else 0.0)
        ok = np.zeros_like(in_lobe)
        for need in (reach, 0.5 * (radius + reach), radius):
            ok = in_lobe & (depth > need + _MARGIN_MM) & (clear > need)
            if ok.any():
                break
        if ok.any():
            idx = np.flatnonzero(ok)
            k = int(idx[rng.integers(len(idx))])
        else:  # a nodule too big for its lobe: the deepest point of the lobe, so it stays in lung
            k = int(np.argmax(np.where(in_lobe, np.minimum(depth, clear), -np.inf)))
        center = np.array([xc.flat[k], yc.flat[k], zc.flat[k]])
        jitter = center + rng.uniform(-0.5, 0.5, 3) * np.array(steps[::-1]) * 0.5
        if _lobe_of(body, jitter[0], jitter[1], jitter[2]) == LOBES.index(spec.lobe):
            center = jitter
        placed[i] = _Nodule(spec, np.round(center, 2), spikes, spike_len, solid_dir)
    return [placed[i] for i in range(len(nodules))]


def _bubbles(nod: _Nodule) -> list[tuple[np.ndarray, float]]:
    """Air pockets of a bubbly lucency (pseudocavitation): (offset from the nodule centre in mm, radius in mm).

    One pocket sits at the centre, large enough for a 1.25-2.5 mm slice to resolve (0.2 x diameter, 1.5-3 mm
    radius), so the centre reads far below the nodule's own HU; two to four smaller ones cluster around it,
    inside 80% of the radius. Their layout comes from a generator seeded by the nodule's centre and size, not
    from the image stream: a lucent nodule is the same phantom as a plain one but for its air."""
    d = nod.spec.diameter_mm
    r0 = float(np.clip(0.2 * d, 1.5, 3.0))
    rng = np.random.default_rng([int(round(abs(float(c)) * 100)) for c in nod.center] + [int(round(d * 10))])
    out = [(np.zeros(3), r0)]
    for _ in range(2 + min(2, int(d // 10))):
        rb = r0 * float(rng.uniform(0.45, 0.75))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        out.append((direction * float(rng.uniform(0.3, 1.0)) * max(0.0, 0.4 * d - rb), rb))
    return out


def _paint_nodule(hu: np.ndarray, nod: _Nodule, g: _Grids, scanner: ScannerProfile) -> tuple[tuple[slice, ...], np.ndarray]:
    """Paint one nodule into the full-resolution volume in place; return its box and occupancy >= 0.5 there.

    In-plane edges ramp over one pixel, and each slice averages sub-slices across its thickness, so small
    nodules come out blurry and faint as in real scans. Spikes are thin tapered needles along antipodal
    pairs of directions, so the centre of mass stays at the centre."""
    ps, ss = scanner.pixel_spacing_mm, scanner.slice_spacing_mm
    radius = 0.5 * nod.spec.diameter_mm
    reach = nod.reach + 2.0 * ps
    sl = []
    for v, c in ((g.z, nod.center[2]), (g.yf, nod.center[1]), (g.xf, nod.center[0])):
        sl.append(slice(max(0, int(np.searchsorted(v, c - reach))), min(len(v), int(np.searchsorted(v, c + reach)))))
    sub = max(2, round(2.0 * ss / ps))
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    z = (g.z[sl[0]][:, None] + offs[None, :] * ss - nod.center[2]).reshape(-1, 1, 1)  # (nz*sub, 1, 1)
    y = (g.yf[sl[1]] - nod.center[1])[None, :, None]
    x = (g.xf[sl[2]] - nod.center[0])[None, None, :]
    z, y, x = (np.broadcast_to(a, (z.shape[0], y.shape[1], x.shape[2])).astype(np.float32) for a in (z, y, x))
    r = np.sqrt(x * x + y * y + z * z)
    sd = r - radius
    if len(nod.spikes):
        p = np.stack([x, y, z], axis=-1)  # (..., 3)
        cos = p @ nod.spikes.T.astype(np.float32) / np.maximum(r, 1e-3)[..., None]
        j = np.argmax(cos, axis=-1)
        c = np.take_along_axis(cos, j[..., None], axis=-1)[..., 0]
        length = nod.spike_len[j].astype(np.float32)
        t = r * c
        perp = r * np.sqrt(np.clip(1.0 - c * c, 0.0, 1.0))
        half_w = np.clip(0.05 * nod.spec.diameter_mm + 0.6, 0.9, 1.6)
        width = half_w * np.sqrt(np.clip((radius + length - t) / (length + 0.3 * radius), 0.0, 1.0))
        tip = np.sqrt(perp * perp + np.maximum(t - radius - length, 0.0) ** 2)
        spike_sd = np.where(t > radius + length, tip, perp - width)
        spike_sd = np.where(t > 0.7 * radius, spike_sd, np.inf)
        sd = np.minimum(sd, spike_sd)
    nz = len(g.z[sl[0]])
    # the edge ramps over one pixel in-plane only: across slices the sub-slice average is the partial volume
    ramp = np.maximum(ps * np.sqrt(x * x + y * y) / np.maximum(r, 1e-3), 0.25 * ps)
    occ = np.clip(0.5 - sd / ramp, 0.0, 1.0).reshape(nz, sub, *sd.shape[1:]).mean(axis=1)
    value = np.full(occ.shape, NODULE_HU[nod.spec.nodule_type] + scanner.hu_offset, np.float32)
    if nod.spec.nodule_type == "part_solid":
        rs, off = _solid_component(nod.spec.diameter_mm)
        cx, cy, cz = nod.solid_dir * off
        s_sd = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) - rs
        s_occ = np.clip(0.5 - s_sd / ramp, 0.0, 1.0).reshape(nz, sub, *sd.shape[1:]).mean(axis=1)
        value += s_occ * (NODULE_HU["solid"] - NODULE_HU["part_solid"])
    if nod.spec.bubbly_lucency:
        b_occ = np.zeros_like(sd)
        for (bx, by, bz), rb in _bubbles(nod):
            b_sd = np.sqrt((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2) - rb
            np.maximum(b_occ, np.clip(0.5 - b_sd / ps, 0.0, 1.0), out=b_occ)
        b_occ = b_occ.reshape(nz, sub, *sd.shape[1:]).mean(axis=1)
        value += b_occ * (TISSUE_HU["air"] + scanner.hu_offset - value)
    box = tuple(sl)
    _lerp(hu[box], value, occ.astype(np.float32))
    return box, occ >= 0.5


# ----------------------------------------------------------------------------------------------- render


def _check(nodules: list[NoduleSpec], scanner: ScannerProfile) -> None:
    if sum(n.is_index for n in nodules) != 1:
        raise CohortError(f"need exactly one index nodule, got {sum(n.is_index for n in nodules)} of {len(nodules)}")
    for n in nodules:
        if n.nodule_type not in NODULE_TYPES or n.lobe not in LOBES or not 1.0 <= n.diameter_mm <= 60.0:
            raise CohortError(f"cannot render nodule {n} (type, lobe or diameter out of range)")
    if scanner.rows < 64 or scanner.columns < 64 or scanner.pixel_spacing_mm <= 0 or scanner.slice_spacing_mm <= 0:
        raise CohortError(f"cannot render with scanner geometry {scanner.rows}x{scanner.columns} "
                          f"at {scanner.pixel_spacing_mm} mm / {scanner.slice_spacing_mm} mm")


def render_chest(nodules: list[NoduleSpec], emphysema: bool, scanner: ScannerProfile, rng: np.random.Generator,
                 *, return_mask: bool = False) -> RenderedCT:
    """Render one patient's chest CT with the given nodules, deterministic given ``rng``.

    Example:
        >>> ct = render_chest([NoduleSpec(12.0, "solid", True, "RUL", is_index=True)], False,
        ...                   ScannerProfile("X", "Y", 1.3, 2.0, 15.0, 0.7, 0.0), np.random.default_rng(0))
        >>> ct.hu.shape[1:], ct.hu.dtype
        ((256, 256), dtype('int16'))
    """
    _check(nodules, scanner)
    ps, ss = scanner.pixel_spacing_mm, scanner.slice_spacing_mm
    rows, cols = scanner.rows, scanner.columns
    w = 2.0 * ps  # voxel size at level H: the width of every anatomical soft edge
    body = _sample_body(scanner, rng)
    z0 = body.z_lo - 10.0
    n = int(math.ceil((body.height + 20.0) / ss)) + 1
    origin = (round(-0.5 * (cols - 1) * ps, 3), round(-0.5 * (rows - 1) * ps, 3), round(z0, 2))
    g = _grids(body, scanner, origin, n)

    # level H: slice-invariant chest wall, then per-slice structures
    wall2d, body2d = _chest_wall_2d(body, g.yh[:, None], g.xh[None, :], w)
    hu = np.repeat(wall2d[None], n, axis=0)  # (n, rows/2, cols/2)
    _paint_cage(hu, body, g, w, rng)
    _paint_spine_and_sternum(hu, body, g, w, rng)
    box = hu[:, g.box[0], g.box[1]]  # a view: the lung box
    yb, xb = g.yh[g.box[0]][:, None], g.xh[g.box[1]][None, :]
    cav = _occ(_ellipse_sd(xb, yb, body.x0, body.y0, body.a_cav, body.b_cav), w)
    below = np.clip((_diaphragm_z(body, xb, yb)[None] - g.z[:, None, None]) / w + 0.5, 0.0, 1.0)
    _lerp(box, np.where(xb < body.x0, TISSUE_HU["liver"], TISSUE_HU["soft_tissue"]), below * cav[None])
    zz, yy, xx = g.z, g.yh, g.xh
    reach = np.array([max(body.heart_r[:2])] * 2 + [body.heart_r[2]]) + 8
    sub, (zs, ys, xs) = _sub_box(hu, zz, yy, xx, np.array(body.heart_c) - reach, np.array(body.heart_c) + reach)
    if sub is not None:
        sd = _ellipsoid_sd(xs, ys, zs, body.heart_c, body.heart_r, body.heart_angle)
        _lerp(sub, TISSUE_HU["fat"], _occ(sd - 4.0, w))
        _lerp(sub, TISSUE_HU["blood"], _occ(sd, w))
    for a, b, r in _great_vessels(body):
        sub, (zs, ys, xs) = _sub_box(hu, zz, yy, xx, np.minimum(a, b) - r - 4, np.maximum(a, b) + r + 4)
        if sub is not None:
            _lerp(sub, TISSUE_HU["blood"], _occ(_capsule_sd(xs, ys, zs, a, b, r), w))
    lung = _lung_occupancy(body, g, w)
    _lerp(box, _lung_values(body, g, lung, emphysema, w, rng), lung)
    for a, b, r in _airway(body):
        sub, (zs, ys, xs) = _sub_box(hu, zz, yy, xx, np.minimum(a, b) - r - 5, np.maximum(a, b) + r + 5)
        if sub is not None:
            sd = _capsule_sd(xs, ys, zs, a, b, r)
            _lerp(sub, TISSUE_HU["soft_tissue"], _occ(sd - (0.8 + 0.15 * r), w))
            _lerp(sub, TISSUE_HU["air"], _occ(sd, w))
    hu += scanner.hu_offset * body2d[None]
    placed = _place_nodules(nodules, body, g, lung, scanner, rng)

    # level F: upsample, nodules, then the scanner
    vol = _up2(_up2(hu, 1, rows), 2, cols)  # (n, rows, cols)
    vol = np.ascontiguousarray(vol)
    index_mask = np.zeros(vol.shape, bool) if return_mask else None
    for nod in placed:
        nbox, nmask = _paint_nodule(vol, nod, g, scanner)
        if nod.spec.is_index and index_mask is not None:
            index_mask[nbox] = nmask
    _scanner(vol, body, g, scanner, rng)
    out = np.clip(vol, -1024, 3071).astype(np.int16)
    fov = (g.xf[None, :] ** 2 + g.yf[:, None] ** 2) > (0.5 * min(rows, cols) * ps) ** 2
    out[:, fov] = _PAD_HU
    centers = [(float(nod.center[0]), float(nod.center[1]), float(nod.center[2])) for nod in placed]
    return RenderedCT(out, origin, ps, ss, centers, index_mask)


def _gauss_kernel(sigma: float, truncate: float = 3.0) -> np.ndarray:
    radius = max(1, int(truncate * sigma + 0.5))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return k / k.sum()


def _scanner(vol: np.ndarray, body: _Body, g: _Grids, scanner: ScannerProfile, rng: np.random.Generator) -> None:
    """Quantum noise then the reconstruction kernel, in place. The noise goes in before the in-plane blur so
    it comes out correlated like real CT noise; its amplitude is scaled so the blurred noise has the
    scanner's standard deviation inside the body; the air around gets a trace (it compresses to almost nothing)."""
    sigma_px = scanner.kernel_sigma_mm / scanner.pixel_spacing_mm
    k = _gauss_kernel(sigma_px)
    gain = float((k * k).sum())  # std of white noise after the separable 2-D blur
    body_f = _occ(_ellipse_sd(g.xf[None, :], g.yf[:, None], body.x0, body.y0, body.a_body, body.b_body),
                  scanner.pixel_spacing_mm)
    amp = (scanner.noise_hu / gain) * (0.03 + 0.97 * body_f)
    noise = rng.standard_normal(vol.shape, dtype=np.float32)
    noise *= amp[None]
    vol += noise
    ndi.correlate1d(vol, k, axis=1, output=noise, mode="nearest")
    ndi.correlate1d(noise, k, axis=2, output=vol, mode="nearest")
