"""Nodule measurement from the CT (workbench/runtime/measure.py): known shapes rendered the way a scanner images
them (slab-averaged slices, kernel blur, noise) come back with their axes within a voxel and their type right, a
vessel touching the nodule left out; the loader's orientation does not matter; a centre outside the volume or on
empty lung is refused by name; one phantom chest from the cohort generator is measured end to end (size, type and
lobe), and the benchmark scores a few tiny-cohort cases against the generator's truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from workbench.errors import CaseError
from workbench.runtime.measure import measure_nodule
from workbench.runtime.measure_chest import ChestGeometry, lobe_of

PS, SS = 1.25, 2.0  # pixel and slice spacing, mm
SHAPE = (40, 96, 96)  # canonical (z, y, x): a slab of chest, lungs either side of a mediastinum
ORIGIN = (-0.5 * (SHAPE[2] - 1) * PS, -0.5 * (SHAPE[1] - 1) * PS, -40.0)  # LPS x, y, z of voxel (0, 0, 0)
SOFT, LUNG, GG_PART, GG_NON, SOLID = 40.0, -860.0, -500.0, -650.0, 30.0


def _ellipsoid(center: tuple[float, float, float], axes: tuple[float, float, float], angle: float = 0.0,
               sub: int = 5) -> np.ndarray:
    """Share of each canonical voxel inside an ellipsoid (LPS mm; axes x', y' turned by ``angle``, z), by
    sub-sampling each voxel sub^3 times: the partial volume a scanner's detector and slab see. Only the box around
    the ellipsoid is sampled."""
    out = np.zeros(SHAPE, np.float32)
    reach = max(axes) + 2.0 * SS
    box = []
    for i, (c, s, o) in enumerate(((center[2], SS, ORIGIN[2]), (center[1], PS, ORIGIN[1]), (center[0], PS, ORIGIN[0]))):
        box.append(slice(max(0, int((c - reach - o) / s)), min(SHAPE[i], int((c + reach - o) / s) + 2)))
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    z, y, x = (o + s * (np.arange(b.start, b.stop)[:, None] + offs).ravel()
               for b, s, o in zip(box, (SS, PS, PS), (ORIGIN[2], ORIGIN[1], ORIGIN[0]), strict=True))
    dx, dy, dz = x[None, None, :] - center[0], y[None, :, None] - center[1], z[:, None, None] - center[2]
    u = (math.cos(angle) * dx + math.sin(angle) * dy) / axes[0]
    v = (-math.sin(angle) * dx + math.cos(angle) * dy) / axes[1]
    inside = (u * u + v * v + (dz / axes[2]) ** 2 <= 1.0).astype(np.float32)
    n = [b.stop - b.start for b in box]
    out[tuple(box)] = inside.reshape(n[0], sub, n[1], sub, n[2], sub).mean(axis=(1, 3, 5))
    return out


def _chest(*nodules: tuple[np.ndarray, float], seed: int = 0) -> np.ndarray:
    """Canonical HU: soft-tissue body, two lungs, the nodules painted over the lung, then kernel blur and noise."""
    zz, yy, xx = np.meshgrid(np.arange(SHAPE[0]), ORIGIN[1] + PS * np.arange(SHAPE[1]),
                             ORIGIN[0] + PS * np.arange(SHAPE[2]), indexing="ij")
    body = (xx / 58.0) ** 2 + (yy / 50.0) ** 2 <= 1.0
    lungs = ((np.abs(xx) - 28.0) / 20.0) ** 2 + (yy / 38.0) ** 2 <= 1.0
    hu = np.where(body, SOFT, -1000.0).astype(np.float32)
    hu[lungs] = LUNG
    for occupancy, value in nodules:
        hu += occupancy * (value - hu)
    rng = np.random.default_rng(seed)
    hu += rng.normal(0.0, 25.0, hu.shape).astype(np.float32)
    return ndi.gaussian_filter(hu, (0.0, 0.7 / PS, 0.7 / PS))


def _as_loaded(canonical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The canonical volume as ``load_ct_series`` gives it: (I, J, K) = (column, row, slice), RAS affine."""
    affine = np.diag([-PS, -PS, SS, 1.0])
    affine[:3, 3] = [-ORIGIN[0], -ORIGIN[1], ORIGIN[2]]
    return np.transpose(canonical, (2, 1, 0)).copy(), affine


RIGHT = (-28.0, 0.0, 0.0)  # the right lung's centre, LPS mm (patient's right is -x)


def test_solid_sphere_axes_volume_and_type_within_a_voxel() -> None:
    r = 4.0
    hu, affine = _as_loaded(_chest((_ellipsoid(RIGHT, (r, r, r)), SOLID)))
    m = measure_nodule(hu, affine, RIGHT, where="sphere")
    assert m.nodule_type == "solid"
    assert abs(m.long_axis_mm - 2 * r) <= PS and abs(m.short_axis_mm - 2 * r) <= PS
    assert abs(m.mean_diameter_mm - 2 * r) <= 0.5
    assert m.volume_mm3 == pytest.approx(4 / 3 * math.pi * r**3, rel=0.15)
    assert m.solid_component_mm == m.long_axis_mm
    assert np.allclose(m.center_lps, RIGHT, atol=0.5)


def test_turned_ellipsoid_long_and_short_axis() -> None:
    axes = (7.0, 4.0, 4.5)
    hu, affine = _as_loaded(_chest((_ellipsoid(RIGHT, axes, angle=math.radians(30)), SOLID)))
    m = measure_nodule(hu, affine, RIGHT, where="ellipsoid")
    assert abs(m.long_axis_mm - 2 * axes[0]) <= PS and abs(m.short_axis_mm - 2 * axes[1]) <= PS
    assert m.mean_diameter_mm == pytest.approx(axes[0] + axes[1], abs=PS)


def test_ground_glass_with_solid_core_is_part_solid() -> None:
    r, core_r = 7.0, 2.5
    core_c = (RIGHT[0] + 3.0, RIGHT[1], RIGHT[2])  # eccentric, against the wall as in real part-solid nodules
    hu, affine = _as_loaded(_chest((_ellipsoid(RIGHT, (r, r, r)), GG_PART), (_ellipsoid(core_c, (core_r,) * 3), SOLID)))
    m = measure_nodule(hu, affine, RIGHT, where="part-solid")
    assert m.nodule_type == "part_solid"
    assert abs(m.mean_diameter_mm - 2 * r) <= PS
    assert m.solid_component_mm is not None and abs(m.solid_component_mm - 2 * core_r) <= PS


def test_faint_ground_glass_is_non_solid() -> None:
    r = 5.0
    hu, affine = _as_loaded(_chest((_ellipsoid(RIGHT, (r, r, r)), GG_NON)))
    m = measure_nodule(hu, affine, RIGHT, where="ground glass")
    assert m.nodule_type == "non_solid" and m.solid_component_mm is None
    assert abs(m.mean_diameter_mm - 2 * r) <= PS


def _vessel(x0: float, z0: float, r: float) -> np.ndarray:
    """Share of each canonical voxel inside a cylinder along y (a vessel) through (x0, z0) LPS mm, radius r."""
    offs = (np.arange(5) + 0.5) / 5 - 0.5
    z = ORIGIN[2] + SS * (np.arange(SHAPE[0])[:, None] + offs).ravel()
    x = ORIGIN[0] + PS * (np.arange(SHAPE[2])[:, None] + offs).ravel()
    inside = ((x[None, :] - x0) ** 2 + (z[:, None] - z0) ** 2 <= r * r).astype(np.float32)
    occ = inside.reshape(SHAPE[0], 5, SHAPE[2], 5).mean(axis=(1, 3))
    return np.broadcast_to(occ[:, None, :], SHAPE).copy()


@pytest.mark.parametrize(("r", "value", "kind"), [(3.0, SOLID, "solid"), (4.0, GG_NON, "non_solid")])
def test_a_vessel_touching_the_nodule_is_left_out(r: float, value: float, kind: str) -> None:
    """A 3 mm wide vessel as dense as soft tissue runs past the nodule, touching it: the robust fit leaves it out."""
    vessel = _vessel(RIGHT[0] + r + 1.0, RIGHT[2], 1.5)
    hu, affine = _as_loaded(_chest((vessel, SOLID), (_ellipsoid(RIGHT, (r, r, r)), value)))
    m = measure_nodule(hu, affine, RIGHT, where="vessel")
    assert m.nodule_type == kind and m.caveats == ()
    assert abs(m.mean_diameter_mm - 2 * r) <= 0.5 * PS and abs(m.long_axis_mm - 2 * r) <= PS


def test_orientation_of_the_array_does_not_matter_and_the_mask_lands_on_the_nodule() -> None:
    hu, affine = _as_loaded(_chest((_ellipsoid(RIGHT, (4.0, 4.0, 4.0)), SOLID)))
    a = measure_nodule(hu, affine, RIGHT)
    # the same series stored with rows and columns swapped and slices in reverse order (head first)
    swapped = np.flip(np.transpose(hu, (1, 0, 2)), axis=2).copy()
    aff = affine[:, [1, 0, 2, 3]].copy()
    aff[:3, 3] += aff[:3, 2] * (hu.shape[2] - 1)
    aff[:3, 2] *= -1
    b = measure_nodule(swapped, aff, RIGHT)
    assert (a.long_axis_mm, a.short_axis_mm, a.nodule_type) == (b.long_axis_mm, b.short_axis_mm, b.nodule_type)
    for m, vol, af in ((a, hu, affine), (b, swapped, aff)):
        full = m.full_mask(vol.shape)
        assert vol[full].mean() > -300  # the mask covers the dense nodule, not lung
        ijk = np.argwhere(full).mean(axis=0)
        ras = af @ np.append(ijk, 1.0)
        assert np.allclose([-ras[0], -ras[1], ras[2]], RIGHT, atol=1.0)
        assert full[:, :, m.axial_index].any()


def test_centre_outside_the_volume_is_refused_naming_the_case() -> None:
    hu, affine = _as_loaded(_chest((_ellipsoid(RIGHT, (4.0, 4.0, 4.0)), SOLID)))
    with pytest.raises(CaseError, match=r"case_7: nodule centre .* outside the CT volume"):
        measure_nodule(hu, affine, (RIGHT[0], RIGHT[1], 500.0), where="case_7")


def test_no_nodule_at_the_centre_is_refused() -> None:
    hu, affine = _as_loaded(_chest())
    with pytest.raises(CaseError, match=r"case_8: no nodule found at"):
        measure_nodule(hu, affine, RIGHT, where="case_8")


def test_lobe_rule() -> None:
    chest = ChestGeometry(x_mid=0.0, y_mid=0.0, half_depth_mm=100.0, z_base=0.0, z_apex=200.0, kernel_sigma_mm=0.7,
                          noise_hu=20.0, lung=np.zeros((1, 1, 1), bool))
    assert lobe_of((-50, 0, 180), chest) == "RUL"  # right, high
    assert lobe_of((-50, -80, 100), chest) == "RML"  # right, front, mid-height: below the horizontal fissure
    assert lobe_of((-50, 80, 100), chest) == "RLL"  # right, back, mid-height: below the oblique fissure
    assert lobe_of((50, -80, 100), chest) == "LUL" and lobe_of((50, 80, 100), chest) == "LLL"
    assert lobe_of((50, 0, 20), chest) == "LLL" and lobe_of((-50, 0, 20), chest) == "RLL"  # the bases


def test_a_phantom_chest_end_to_end() -> None:
    """One chest from the cohort generator (tests may use it; the module may not): size, type and lobe."""
    from workbench.cohort.phantom import render_chest
    from workbench.cohort.spec import NoduleSpec, ScannerProfile

    spec = NoduleSpec(9.0, "solid", False, "RUL", is_index=True)
    ct = render_chest([spec], False, ScannerProfile("X", "Y", 1.3, 2.0, 15.0, 0.7, 0.0), np.random.default_rng(3))
    hu = np.transpose(ct.hu, (2, 1, 0)).astype(np.float32)
    affine = np.diag([-ct.pixel_spacing_mm, -ct.pixel_spacing_mm, ct.slice_spacing_mm, 1.0])
    affine[:3, 3] = [-ct.origin_lps[0], -ct.origin_lps[1], ct.origin_lps[2]]
    m = measure_nodule(hu, affine, ct.nodule_centers_lps[0], where="phantom")
    assert abs(m.mean_diameter_mm - spec.diameter_mm) <= 0.5
    assert (m.nodule_type, m.lobe) == ("solid", "RUL")


def test_the_benchmark_scores_a_split_of_the_tiny_cohort_against_its_truth(tiny_cohort) -> None:
    """A few cases of the tiny cohort measured end to end (DICOM, chest, fit) and scored against truth.jsonl."""
    from workbench.bench.measure_bench import TARGETS, run_measure_bench

    r = run_measure_bench(cohort=tiny_cohort, split="train", limit=3, progress=False)
    assert r["split"] == "train" and r["n_cases"] + r["n_refused"] == 3 and r["n_cases"] >= 2
    assert set(TARGETS) <= set(r) and set(r["targets"]) == set(TARGETS)
    assert r["diameter_mae_mm"] <= 1.5 and r["type_accuracy"] >= 0.5 and r["lobe_accuracy"] >= 0.5
    assert 0.0 <= r["diameter_within_1_5mm"] <= 1.0 and r["diameter_off_over_5mm"] == 0.0
    for rec in r["worst"]:  # each record carries its truth next to what was measured
        assert rec["diameter_err_mm"] == pytest.approx(rec["measured"]["mean_diameter_mm"] - rec["diameter_mm"], abs=0.01)


def test_the_bench_command_accepts_measure() -> None:
    from workbench.cli import build_parser

    a = build_parser().parse_args(["bench", "measure", "--split", "val", "--limit", "5"])
    assert (a.name, a.split, a.limit) == ("measure", "val", 5)
