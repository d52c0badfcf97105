"""Measure a pulmonary nodule from the CT at its marked centre: axes, Lung-RADS mean diameter, volume, type, lobe.

The risk model gives a probability, not a size; guidelines (Lung-RADS, Fleischner, BTS) want sizes, the type and
the lobe, and a radiologist checks them first. This module measures them from the image alone, classically:

1. **Orientation.** The series (the loader's (I, J, K) array and RAS affine) is turned into LPS-ordered (z, y, x)
   voxels; oblique series are refused.
2. **Chest** (``measure_chest.py``): body outline, lungs, their base and apex (for the lobe), and the scanner's
   in-plane blur and noise, read from the noise texture of flat soft tissue.
3. **Nodule** (``measure_fit.py``): a model of the scanner's partial volume (an ellipsoid, slab-averaged over the
   slice thickness and blurred by the kernel, over a fitted lung background) fitted with a bounded robust loss,
   so attached vessels and spicules are ignored rather than cut by a threshold. A nodule fitted fainter than soft
   tissue is refitted at soft-tissue density and that fit kept when it explains the image about as well (near the
   voxel size only density x volume can be read) or when the faint fit is not uniform inside (laid over a vessel and
   the lung beside it); ground glass gets a spherical solid core if one shows.
4. **Read-out.** Long and short axis: the fitted ellipsoid's section on the axial slice through its centre (the
   slice of greatest extent), one decimal; mean diameter as Lung-RADS v2022 (``guidelines.lung_rads_mean_diameter``);
   volume of the ellipsoid. Type from the fitted density of the nodule core (``type_of``). Lobe from the position
   in the lungs (``measure_chest.lobe_of``).

What it does not do: it measures the nodule at the mark, it does not find nodules; calcified nodules (denser than
``FitConfig.max_core_hu``) are capped in density and so measured too large; a nodule merged over a long contact
with a vessel of its own width or with the pleura can be measured with part of it. Sizes, type and lobe are checked
against the synthetic cohort's truth by ``workbench bench measure`` (``workbench/bench/measure_bench.py``).

Example:
    >>> m = measure_case(case)  # doctest: +SKIP
    >>> m.long_axis_mm, m.short_axis_mm, m.mean_diameter_mm, m.nodule_type, m.lobe  # doctest: +SKIP
    (8.1, 7.8, 8.0, 'solid', 'RUL')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.data.case import Case
from workbench.errors import CaseError
from workbench.runtime.guidelines import lung_rads_mean_diameter
from workbench.runtime.measure_chest import ChestConfig, chest_geometry, lobe_of
from workbench.runtime.measure_fit import FitConfig, NoduleFit, NoNodule, fit_nodule
from workbench.runtime.measure_margin import MarginConfig, low_attenuation_share, spiculation_score

NODULE_TYPES = ("solid", "part_solid", "non_solid")
MERGED = ("the nodule merges with a vessel or other dense structure: its size and type are uncertain and need a "
          "radiologist's read")


@dataclass(frozen=True)
class MeasureConfig:
    """Settings of one measurement; the defaults were chosen on the synthetic cohort's train split."""

    chest: ChestConfig = field(default_factory=ChestConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    margin: MarginConfig = field(default_factory=MarginConfig)
    solid_min_hu: float = -250.0  # a nodule whose fitted core is denser than this is solid
    # Ground glass denser than this is called part-solid even when no solid core can be resolved (a small
    # part-solid nodule's core is below the voxel size, but it raises the density of the whole).
    part_solid_min_hu: float = -560.0
    solid_core_min_mm: float = 1.5  # a solid core at least this wide makes ground glass part-solid


@dataclass(frozen=True)
class NoduleMeasurement:
    """One nodule's measurements, and where it was measured so a viewer can draw it.

    ``mask`` is a box of the series' voxel grid (the loader's (I, J, K) order) starting at ``mask_origin``: the
    voxels at least half inside the fitted nodule. ``full_mask`` pastes it into the whole series."""

    where: str  # the case id or series the measurement is of
    long_axis_mm: float  # on the axial slice of greatest extent, one decimal
    short_axis_mm: float  # perpendicular to the long axis on that slice
    mean_diameter_mm: float  # Lung-RADS v2022: mean of long and short axis, 0.1 mm
    volume_mm3: float
    solid_component_mm: float | None  # long axis of the solid part: part-solid (0.0 if unresolved), solid (whole)
    nodule_type: str  # one of NODULE_TYPES
    lobe: str  # one of measure_chest.LOBES
    center_lps: tuple[float, float, float]  # fitted centre, LPS mm
    core_hu: float  # fitted density of the nodule (its ground glass for a part-solid one)
    background_hu: float  # fitted density of the lung around it
    axial_index: int  # K index (slice) of the loader's grid through the centre: where the axes lie
    mask_origin: tuple[int, int, int]  # (I, J, K) of mask[0, 0, 0]
    mask: np.ndarray = field(repr=False)  # bool box, (I, J, K) order
    caveats: tuple[str, ...] = ()  # plain reasons to check the measurement by eye (empty: none known)
    spiculation_score: float = 0.0  # share of rays dense just beyond the fitted surface (measure_margin)
    spiculated: bool = False
    emphysema_laa: float = 0.0  # share of lung voxels below -950 HU
    emphysema: bool = False

    def full_mask(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The mask in a bool volume of the series' (I, J, K) ``shape``."""
        out = np.zeros(shape, bool)
        lo = np.maximum(self.mask_origin, 0)
        hi = np.minimum(np.add(self.mask_origin, self.mask.shape), shape)
        if np.all(hi > lo):
            src = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(lo, hi, self.mask_origin, strict=True))
            out[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))] = self.mask[src]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the mask as its box and voxel count)."""
        return {
            "where": self.where, "long_axis_mm": self.long_axis_mm, "short_axis_mm": self.short_axis_mm,
            "mean_diameter_mm": self.mean_diameter_mm, "volume_mm3": self.volume_mm3,
            "solid_component_mm": self.solid_component_mm, "nodule_type": self.nodule_type, "lobe": self.lobe,
            "center_lps": list(self.center_lps), "core_hu": self.core_hu, "background_hu": self.background_hu,
            "axial_index": self.axial_index, "mask_origin": list(self.mask_origin),
            "mask_shape": list(self.mask.shape), "mask_voxels": int(self.mask.sum()), "caveats": list(self.caveats),
            "spiculation_score": self.spiculation_score, "spiculated": self.spiculated,
            "emphysema_laa": self.emphysema_laa, "emphysema": self.emphysema,
        }


@dataclass(frozen=True)
class _Frame:
    """How the loader's (I, J, K) array maps onto canonical LPS-ordered (z, y, x) voxels."""

    axes: tuple[int, int, int]  # array axis holding canonical z, y, x
    flips: tuple[bool, bool, bool]  # canonical axis runs against the array axis
    shape: tuple[int, int, int]  # the array's (I, J, K) shape

    def canonical(self, a: np.ndarray, contiguous: bool = True) -> np.ndarray:
        """``a`` in canonical (z, y, x) order; ``contiguous=False`` returns a view (to take one slice, no copy)."""
        out = np.transpose(a, self.axes)
        flips = tuple(i for i in range(3) if self.flips[i])
        out = np.flip(out, flips) if flips else out
        return np.ascontiguousarray(out) if contiguous else out

    def to_array_box(self, start: tuple[int, int, int], box: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
        """A canonical box (its start index and contents) as a box of the array grid."""
        flips = tuple(i for i in range(3) if self.flips[i])
        data = np.flip(box, flips) if flips else box
        first = [self.shape[self.axes[c]] - start[c] - box.shape[c] if self.flips[c] else start[c] for c in range(3)]
        inverse = tuple(int(np.argsort(self.axes)[i]) for i in range(3))
        origin = [0, 0, 0]
        for c in range(3):
            origin[self.axes[c]] = int(first[c])
        return (origin[0], origin[1], origin[2]), np.ascontiguousarray(np.transpose(data, inverse))

    def array_index(self, c: int, index: int) -> int:
        return self.shape[self.axes[c]] - 1 - index if self.flips[c] else index


def _frame(shape: tuple[int, ...], affine_ras: np.ndarray, where: str
           ) -> tuple[_Frame, tuple[float, float, float], tuple[float, float, float]]:
    """The canonical frame, its origin (LPS x, y, z mm of canonical voxel 0) and spacing (z, y, x mm)."""
    a = np.asarray(affine_ras, dtype=np.float64).copy()
    a[:2] *= -1.0  # RAS -> LPS
    cols = a[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    if np.any(norms <= 0):
        raise CaseError(f"{where}: degenerate affine (voxel size {norms.round(3).tolist()} mm)")
    unit = cols / norms
    lps_axis = np.abs(unit).argmax(axis=0)  # for each array axis, the LPS axis it runs along
    if sorted(lps_axis.tolist()) != [0, 1, 2] or np.abs(unit).max(axis=0).min() < 0.99:
        raise CaseError(f"{where}: oblique or tilted series (direction cosines {unit.round(3).tolist()}); "
                        "only axis-aligned series can be measured")
    axes = tuple(int(np.flatnonzero(lps_axis == lps)[0]) for lps in (2, 1, 0))  # canonical z, y, x
    flips = tuple(bool(unit[lps, axes[c]] < 0) for c, lps in enumerate((2, 1, 0)))
    frame = _Frame(axes, flips, (int(shape[0]), int(shape[1]), int(shape[2])))  # type: ignore[arg-type]
    corner = np.array([float(shape[i] - 1) if frame.flips[frame.axes.index(i)] else 0.0 for i in range(3)])
    origin = a[:3, :3] @ corner + a[:3, 3]
    spacing = tuple(float(norms[axes[c]]) for c in range(3))
    return frame, (float(origin[0]), float(origin[1]), float(origin[2])), spacing  # type: ignore[return-value]


def type_of(fit: NoduleFit, config: MeasureConfig = MeasureConfig()) -> str:
    """Solid, part-solid or non-solid from the fitted density of the nodule core.

    Solid: the core reads as soft tissue (above ``solid_min_hu``). Otherwise ground glass: part-solid when a solid
    core at least ``solid_core_min_mm`` wide was fitted inside it, or when the ground glass itself is denser than
    ``part_solid_min_hu``; non-solid otherwise. The density rule is what a partial-volume fit can add to the eye:
    a core below the voxel size still lifts the density of the whole nodule."""
    core = fit.background_hu + fit.nodule.contrast_hu
    if core >= config.solid_min_hu:
        return "solid"
    if fit.solid is not None and 2.0 * fit.solid.semi_axes_mm[0] >= config.solid_core_min_mm:
        return "part_solid"
    return "part_solid" if core >= config.part_solid_min_hu else "non_solid"


def _half_up(x: float) -> float:
    return math.floor(x * 10.0 + 0.5) / 10.0


def measure_nodule(hu: np.ndarray, affine_ras: np.ndarray, center_lps: tuple[float, float, float] | np.ndarray, *,
                   where: str = "series", config: MeasureConfig = MeasureConfig()) -> NoduleMeasurement:
    """Measure the nodule at ``center_lps`` in one CT series (module docstring).

    Args:
        hu: (I, J, K) Hounsfield units as ``load_ct_series`` gives them (its channel dimension dropped).
        affine_ras: (4, 4) voxel -> RAS mm, the loader's ``affine``.
        center_lps: the nodule's centre, LPS mm (the manifest's ``nodule_*_mm``; a click in a DICOM viewer).
        where: the case id or series name that error messages and the result carry.

    Raises:
        CaseError: the centre lies outside the volume or outside the lungs, no nodule is found there, or the series is
            oblique.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise CaseError(f"{where}: expected a 3-D (I, J, K) volume, got shape {hu.shape}")
    frame, origin, spacing = _frame(hu.shape, affine_ras, where)
    vol = frame.canonical(hu).astype(np.float32, copy=False)
    c = np.asarray(center_lps, dtype=np.float64)
    center_vox = np.array([(c[2] - origin[2]) / spacing[0], (c[1] - origin[1]) / spacing[1],
                           (c[0] - origin[0]) / spacing[2]])
    if np.any(center_vox < -0.5) or np.any(center_vox > np.array(vol.shape) - 0.5):
        hi = [origin[0] + spacing[2] * (vol.shape[2] - 1), origin[1] + spacing[1] * (vol.shape[1] - 1),
              origin[2] + spacing[0] * (vol.shape[0] - 1)]
        raise CaseError(f"{where}: nodule centre ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm LPS lies outside the CT volume "
                        f"(x {origin[0]:.1f}..{hi[0]:.1f}, y {origin[1]:.1f}..{hi[1]:.1f}, "
                        f"z {origin[2]:.1f}..{hi[2]:.1f} mm)")
    chest = chest_geometry(vol, origin, spacing, config.chest)
    try:
        fit = fit_nodule(vol, chest.lung, center_vox, spacing, chest.kernel_sigma_mm, chest.noise_hu, config.fit)
    except NoNodule as e:
        raise CaseError(f"{where}: no nodule found at ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm LPS: {e}") from None
    m = _read_out(fit, frame, origin, spacing, chest, where, config)
    centre = np.array([fit.roi_start[i] * spacing[i] + fit.nodule.center_zyx[i] for i in range(3)])
    score = spiculation_score(vol, spacing, centre, fit.nodule.semi_axes_mm, fit.nodule.angle, fit.background_hu,
                              config.margin)
    laa = low_attenuation_share(vol, chest.lung, config.margin)
    return dataclasses.replace(m, spiculation_score=round(score, 4), spiculated=score >= config.margin.spiculated_min_score,
                               emphysema_laa=round(laa, 4), emphysema=laa >= config.margin.emphysema_min_laa)


def _read_out(fit: NoduleFit, frame: _Frame, origin: tuple[float, float, float], spacing: tuple[float, float, float],
              chest, where: str, config: MeasureConfig) -> NoduleMeasurement:
    a, b, _ = fit.nodule.semi_axes_mm
    long_mm, short_mm = _half_up(2.0 * max(a, b)), _half_up(2.0 * min(a, b))
    kind = type_of(fit, config)
    if kind == "solid":
        solid_mm: float | None = long_mm
    elif kind == "part_solid":
        solid_mm = _half_up(2.0 * fit.solid.semi_axes_mm[0]) if fit.solid is not None else 0.0
    else:
        solid_mm = None
    cz, cy, cx = (fit.roi_start[i] * spacing[i] + fit.nodule.center_zyx[i] for i in range(3))
    center = (origin[0] + cx, origin[1] + cy, origin[2] + cz)
    mask_c = fit.occupancy >= 0.5
    mask_origin, mask = frame.to_array_box(fit.roi_start, mask_c)
    k_canonical = int(np.clip(round(cz / spacing[0]), 0, frame.shape[frame.axes[0]] - 1))
    return NoduleMeasurement(
        where=where, long_axis_mm=long_mm, short_axis_mm=short_mm,
        mean_diameter_mm=lung_rads_mean_diameter(max(long_mm, 0.1), max(short_mm, 0.1)),
        volume_mm3=round(fit.nodule.volume_mm3, 1), solid_component_mm=solid_mm, nodule_type=kind,
        lobe=lobe_of(center, chest, config.chest), center_lps=tuple(round(v, 2) for v in center),  # type: ignore[arg-type]
        core_hu=round(fit.background_hu + fit.nodule.contrast_hu, 1), background_hu=round(fit.background_hu, 1),
        axial_index=frame.array_index(0, k_canonical), mask_origin=mask_origin, mask=mask,
        caveats=(MERGED,) if fit.merged else (),
    )


@dataclass(frozen=True)
class AxialView:
    """The axial slice through a measured nodule, in radiological display order: rows run anterior to posterior,
    columns from the patient's right to left (canonical LPS (y, x) is exactly that), with the nodule's mask."""

    hu: np.ndarray  # (rows, cols) HU
    mask: np.ndarray  # (rows, cols) bool: the measured nodule on this slice
    pixel_mm: tuple[float, float]  # (row, col) spacing
    origin_mm: tuple[float, float]  # LPS (y, x) of pixel (0, 0)
    z_mm: float  # LPS z of the slice
    center_mm: tuple[float, float]  # LPS (y, x) of the nodule's fitted centre


def axial_view(hu: np.ndarray, affine_ras: np.ndarray, m: NoduleMeasurement) -> AxialView:
    """The slice ``m`` measured its axes on (``NoduleMeasurement.axial_index``), for a key image a reader can check
    the measurement on; ``hu`` is the loader's (I, J, K) array the measurement was made from."""
    hu = np.asarray(hu)
    frame, origin, spacing = _frame(hu.shape, affine_ras, m.where)
    k = frame.array_index(0, m.axial_index)  # the same mapping both ways (a flip is its own inverse)
    vol = frame.canonical(hu, contiguous=False)  # views: only the one slice is copied
    mask = frame.canonical(m.full_mask(hu.shape), contiguous=False)
    return AxialView(hu=np.array(vol[k]), mask=np.array(mask[k]), pixel_mm=(spacing[1], spacing[2]), origin_mm=(origin[1], origin[0]),
                     z_mm=origin[2] + spacing[0] * k, center_mm=(m.center_lps[1], m.center_lps[0]))


def measure_image(image: Any, center_lps: tuple[float, float, float] | np.ndarray, *, where: str = "series",
                  config: MeasureConfig = MeasureConfig()) -> NoduleMeasurement:
    """``measure_nodule`` on a series as ``load_ct_series`` returns it (channel first, RAS affine)."""
    return measure_nodule(image[0].numpy(), np.asarray(image.affine), center_lps, where=where, config=config)


def measure_case(case: Case, config: MeasureConfig = MeasureConfig()) -> NoduleMeasurement:
    """Load the case's CT series and measure the nodule at its marked centre (``Case.nodule_lps_mm``).

    Raises:
        CaseError: the case has no CT or no centre, or ``measure_nodule`` refuses it.
        DicomError: the series cannot be read.
    """
    from workbench.data.dicom_io import load_ct_series

    if case.series_dir is None or case.nodule_lps_mm is None:
        raise CaseError(f"{case.case_id}: no CT series or no nodule centre to measure")
    return measure_image(load_ct_series(case.series_dir), case.nodule_lps_mm, where=case.case_id, config=config)


__all__ = ["MERGED", "NODULE_TYPES", "AxialView", "MeasureConfig", "axial_view", "measure_image", "NoduleMeasurement", "measure_case", "measure_nodule", "type_of"]
