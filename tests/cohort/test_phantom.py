"""The synthetic chest CT and its DICOM series: valid files, PHI where a hospital has it, geometry and HU that
the project's loader reads back exactly, nodules where the truth says, emphysema that shows.

A handful of renders at full size (256 x 256): the HU claims only hold at the real pixel size.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage as ndi

from workbench.cohort.dicom_writer import dicom_phi_strings, write_ct_series
from workbench.cohort.phantom import NODULE_HU, RenderedCT, render_chest
from workbench.cohort.spec import NoduleSpec, PatientIdentity, ScannerProfile
from workbench.data import load_ct_series

# a sharp thin-slice scanner and a soft thick-slice one (the hard case for small nodules)
THIN = ScannerProfile("Halcyon Imaging", "HX-128", 1.25, 1.25, 18.0, 0.55, 4.0, transfer_syntax="jpegls")
THICK = ScannerProfile("Meridian Medical Systems", "Aurora 64", 1.35, 2.5, 14.0, 0.9, -6.0, transfer_syntax="rle")

IDENTITY = PatientIdentity(
    first_name="Françoise", last_name="De la Cruz", sex="F", birth_date=date(1951, 3, 14),
    visit_date=date(2023, 6, 2), mrn="A-448-201", accession="CT23-0042817", phone="(555) 010-4477",
    email="fdlc@example.org", street="12 Elm Street", city="Springfield", zip_code="62704", ssn="912-44-1234",
    physician="Olusegun Adeyemi", institution="Mercy Valley Hospital",
)


def _voxel(ct: RenderedCT, lps: tuple[float, float, float]) -> np.ndarray:
    """(slice, row, col) index of an LPS point in the rendered volume."""
    o = ct.origin_lps
    return np.array([(lps[2] - o[2]) / ct.slice_spacing_mm, (lps[1] - o[1]) / ct.pixel_spacing_mm,
                     (lps[0] - o[0]) / ct.pixel_spacing_mm])


def _core(mask: np.ndarray, pixel_mm: float, slice_mm: float, mm: float = 2.0) -> np.ndarray:
    """``mask`` (K, J, I) eroded by ``mm``: Euclidean in-plane, whole slices (at least one) across them.

    A 1.25-2.5 mm slice averages the nodule's edge across its thickness; counting its centre 2 mm inside
    would keep exactly the partial-volume slices the erosion is there to remove."""
    box = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in ndi.find_objects(mask.astype(np.uint8))[0])
    sub = np.pad(mask[box], 1)  # so the box edge counts as outside
    inplane = ndi.distance_transform_edt(sub, sampling=(1e6, pixel_mm, pixel_mm)) > mm
    across = ndi.binary_erosion(sub, structure=np.ones((3, 1, 1), bool), iterations=max(1, math.ceil(mm / slice_mm)))
    core = np.zeros_like(mask)
    core[box] = (inplane & across)[1:-1, 1:-1, 1:-1]
    return core


def _lung_mask(hu: np.ndarray) -> np.ndarray:
    """Air-like voxels not connected to the outside of the body: lungs and airway."""
    low = hu < -400
    lab, _ = ndi.label(low)
    edge = np.unique(np.concatenate([lab[:, 0].ravel(), lab[:, -1].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]))
    return low & ~np.isin(lab, edge)


@pytest.fixture(scope="module")
def case() -> RenderedCT:
    nodules = [NoduleSpec(14.0, "part_solid", True, "RUL", is_index=True), NoduleSpec(4.0, "solid", False, "LLL")]
    return render_chest(nodules, False, THIN, np.random.default_rng(11), return_mask=True)


@pytest.fixture(scope="module")
def series(case: RenderedCT, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same case written in each transfer syntax."""
    out = {}
    for syntax in ("jpegls", "rle", "explicit"):
        out[syntax] = tmp_path_factory.mktemp(syntax)
        write_ct_series(out[syntax], case, replace(THIN, transfer_syntax=syntax), IDENTITY, uid_seed="7:case-1")
    return out


@pytest.mark.parametrize("syntax", ["jpegls", "rle", "explicit"])
def test_dciodvfy_has_no_errors(series: dict[str, Path], syntax: str) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    files = sorted(series[syntax].iterdir())
    for f in files[:: max(1, len(files) // 3)]:
        run = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if "Error" in line]
        assert not errors, f"{f.name}: {errors}"


@pytest.mark.parametrize("syntax", ["jpegls", "rle", "explicit"])
def test_loader_reads_back_geometry_and_exact_hu(case: RenderedCT, series: dict[str, Path], syntax: str) -> None:
    img = load_ct_series(series[syntax])
    assert tuple(img.shape) == (1, case.hu.shape[2], case.hu.shape[1], case.hu.shape[0])
    np.testing.assert_allclose(img.meta["spacing"], [THIN.pixel_spacing_mm, THIN.pixel_spacing_mm, THIN.slice_spacing_mm])
    hu = img[0].numpy().transpose(2, 1, 0)  # (I, J, K) -> (K, J, I) = (slice, row, col)
    np.testing.assert_array_equal(hu, case.hu.astype(np.float32))
    # voxel (0, 0, 0) sits at the origin, in RAS
    o = case.origin_lps
    np.testing.assert_allclose(img.affine.numpy()[:3, 3], [-o[0], -o[1], o[2]], atol=1e-3)


def test_file_names_do_not_sort_in_slice_order(series: dict[str, Path]) -> None:
    files = sorted(series["explicit"].iterdir())
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    assert z != sorted(z) and z != sorted(z, reverse=True)


def test_headers_carry_the_phi_and_pixels_do_not(series: dict[str, Path]) -> None:
    phi = dicom_phi_strings(IDENTITY)
    assert {"De la Cruz^Françoise", "A-448-201", "19510314", "CT23-0042817", "Adeyemi^Olusegun",
            "Mercy Valley Hospital", "20230602"} <= set(phi)
    for syntax in ("jpegls", "explicit"):
        f = sorted(series[syntax].iterdir())[0]
        ds = pydicom.dcmread(f)
        header = " ".join(str(e.value) for e in ds if e.tag != 0x7FE00010)
        pixels = ds.PixelData
        for s in phi:
            assert s in header, f"{s!r} missing from the header"
            assert s.encode() not in pixels
        assert ds.PatientName == "De la Cruz^Françoise" and ds.PatientID == "A-448-201"
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"


def test_index_nodule_centre_is_its_centre_of_mass(case: RenderedCT, series: dict[str, Path]) -> None:
    mask = case.index_mask
    assert mask is not None and mask.sum() > 100
    spacing = np.array([case.slice_spacing_mm, case.pixel_spacing_mm, case.pixel_spacing_mm])
    centre = case.nodule_centers_lps[0]
    # in the renderer's own geometry, in mm
    com = np.array(ndi.center_of_mass(mask))
    assert np.all(np.abs(com - _voxel(case, centre)) * spacing <= spacing)
    # through the loader's affine: LPS -> RAS -> voxel (i, j, k)
    img = load_ct_series(series["jpegls"])
    ijk = np.linalg.inv(img.affine.numpy()) @ np.array([-centre[0], -centre[1], centre[2], 1.0])
    com_ijk = np.array(ndi.center_of_mass(mask.transpose(2, 1, 0)))
    assert np.all(np.abs(ijk[:3] - com_ijk) <= 1.0), (ijk[:3], com_ijk)
    # and the nodule sits in lung: the shell 2-4 mm beyond its 7 mm radius reads as lung, vessels aside
    v = _voxel(case, centre)
    lo = np.maximum(0, np.floor(v - 12.0 / spacing)).astype(int)
    k, r, c = np.ogrid[lo[0] : lo[0] + 40, lo[1] : lo[1] + 40, lo[2] : lo[2] + 40]
    dist = np.sqrt(((k - v[0]) * spacing[0]) ** 2 + ((r - v[1]) * spacing[1]) ** 2 + ((c - v[2]) * spacing[2]) ** 2)
    box = (slice(lo[0], lo[0] + 40), slice(lo[1], lo[1] + 40), slice(lo[2], lo[2] + 40))
    shell = (dist > 7.0 + 2.0) & (dist < 7.0 + 4.0) & ~mask[box]
    assert np.median(case.hu[box][shell]) < -600


@pytest.mark.parametrize(
    ("diameter", "kind", "spiculated", "scanner", "seed"),
    [
        (8.0, "solid", False, THICK, 1),  # smallest size, thickest slices, softest kernel
        (8.0, "part_solid", True, THICK, 2),
        (9.0, "non_solid", False, THIN, 3),
        (24.0, "part_solid", False, THIN, 4),  # a large solid component
        (30.0, "solid", True, THICK, 5),
    ],
)
def test_nodule_core_reads_its_type(tmp_path: Path, diameter: float, kind: str, spiculated: bool,
                                    scanner: ScannerProfile, seed: int) -> None:
    ct = render_chest([NoduleSpec(diameter, kind, spiculated, "LUL", is_index=True)], False, scanner,
                      np.random.default_rng(seed), return_mask=True)
    write_ct_series(tmp_path, ct, replace(scanner, transfer_syntax="explicit"), IDENTITY, uid_seed=f"core-{seed}")
    hu = load_ct_series(tmp_path)[0].numpy()  # (I, J, K)
    assert ct.index_mask is not None
    core = _core(ct.index_mask, scanner.pixel_spacing_mm, scanner.slice_spacing_mm).transpose(2, 1, 0)
    assert core.sum() >= 3
    expected = NODULE_HU[kind] + scanner.hu_offset
    assert abs(float(np.median(hu[core])) - expected) <= 30.0, (float(np.median(hu[core])), expected)


def test_emphysema_raises_low_attenuation_area() -> None:
    nodules = [NoduleSpec(6.0, "solid", False, "RLL", is_index=True)]
    laa = {}
    for emphysema in (False, True):
        ct = render_chest(nodules, emphysema, THICK, np.random.default_rng(21))
        lung = _lung_mask(ct.hu)
        laa[emphysema] = float((ct.hu[lung] < -950 + THICK.hu_offset).mean())
    assert laa[False] < 0.05
    assert laa[True] > 0.10 and laa[True] - laa[False] > 0.08, laa


def test_render_is_deterministic_and_places_every_nodule() -> None:
    nodules = [NoduleSpec(10.0, "non_solid", False, "RML", is_index=True), NoduleSpec(4.5, "solid", False, "LUL"),
               NoduleSpec(3.0, "solid", False, "RLL")]
    a = render_chest(nodules, True, THICK, np.random.default_rng(5))
    b = render_chest(nodules, True, THICK, np.random.default_rng(5))
    np.testing.assert_array_equal(a.hu, b.hu)
    assert a.nodule_centers_lps == b.nodule_centers_lps and len(a.nodule_centers_lps) == 3
    assert a.hu.dtype == np.int16 and a.hu.shape[1:] == (256, 256)
    height = a.hu.shape[0] * a.slice_spacing_mm
    assert 200.0 <= height <= 300.0
    for centre in a.nodule_centers_lps:  # each centre lies inside the volume, in lung-dark surroundings
        k, r, c = np.round(_voxel(a, centre)).astype(int)
        assert 0 <= k < a.hu.shape[0] and 0 <= r < 256 and 0 <= c < 256
