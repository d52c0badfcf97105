"""``load_ct_series``: HU, ordering by position, RAS affine, compressed syntaxes, and every refusal.

Series are built in tmp_path from pydicom's shipped CT_small.dcm (one 128x128 axial slice): copies with new
positions, UIDs and shuffled file names, so nothing depends on data outside the installed packages.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

from workbench.data.dicom_io import load_ct_series
from workbench.errors import DicomError, NotCTError, SeriesGeometryError, WorkbenchError

CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _base() -> Dataset:
    """CT_small cropped to 96 columns x 128 rows with non-square pixels, so I/J and the spacings cannot swap."""
    ds = pydicom.dcmread(CT_SMALL)
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, :96]).tobytes()
    ds.Columns = 96
    ds.PixelSpacing = [0.7, 0.6]  # (between rows, between columns)
    return ds


def write_series(
    folder: Path,
    z: list[float],
    *,
    orientation: list[float] = AXIAL,
    edit: Callable[[int, Dataset], None] | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """One slice per z (file order = list order = InstanceNumber), random file names; slice k's pixels are
    the base image + 10 k, so content identifies the slice. Returns each slice's stored pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    base, series_uid, rng = _base(), generate_uid(), random.Random(seed)
    pixels = []
    for k, zk in enumerate(z):
        ds = copy.deepcopy(base)
        arr = (base.pixel_array + 10 * k).astype(np.int16)
        ds.PixelData = arr.tobytes()
        ds.ImagePositionPatient = [-50.0, -40.0, zk]
        ds.ImageOrientationPatient = orientation
        ds.InstanceNumber = k + 1
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if edit:
            edit(k, ds)
        ds.save_as(folder / f"{rng.getrandbits(40):x}.dcm", enforce_file_format=True)
        pixels.append(arr)
    return pixels


def expected_hu(ds: Dataset) -> np.ndarray:
    """(I, J) HU as the brief defines it: pixel_array * RescaleSlope + RescaleIntercept."""
    return (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).T.astype(np.float32)


def refusal(exc: type[WorkbenchError], path: Path | str, *words: str) -> str:
    """Load, expect ``exc``; the message is one line naming ``path`` and every word."""
    with pytest.raises(exc) as info:
        load_ct_series(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# --- loading -------------------------------------------------------------------------------------------------


def test_ct_small_single_slice_loads_in_hu(tmp_path: Path) -> None:
    ds = pydicom.dcmread(CT_SMALL)
    img = load_ct_series(CT_SMALL)
    assert img.shape == (1, 128, 128, 1) and img.dtype == torch.float32
    assert np.array_equal(img[0, :, :, 0].numpy(), expected_hu(ds))
    np.testing.assert_allclose(img.meta["spacing"], [0.661468, 0.661468, 5.0])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    np.testing.assert_allclose(img.affine.numpy(), [[-0.661468, 0, 0, -x], [0, -0.661468, 0, -y], [0, 0, 5.0, z], [0, 0, 0, 1]], atol=1e-9)
    assert img.affine.dtype == torch.float64
    assert img.meta["n_slices"] == 1 and img.meta["modality"] == "CT" and str(img.meta["space"]) == "RAS"
    assert img.meta["series_instance_uid"] == ds.SeriesInstanceUID
    assert img.meta["transfer_syntax"] == ds.file_meta.TransferSyntaxUID
    assert np.array_equal(img.meta["original_affine"], img.affine.numpy())
    # privacy: no patient identifier anywhere in the meta
    text = repr(img.meta)
    for phi in (str(ds.PatientName), ds.PatientID):
        assert phi not in text

    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "slice").write_bytes(Path(CT_SMALL).read_bytes())
    again = load_ct_series(folder)
    assert torch.equal(again.as_tensor(), img.as_tensor()) and again.meta["filename_or_obj"] == str(folder)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda s: s.name)
def test_compressed_copies_load_to_the_same_hu(tmp_path: Path, syntax: str) -> None:
    ds = pydicom.dcmread(CT_SMALL)
    try:
        ds.compress(syntax)
    except (RuntimeError, NotImplementedError) as e:  # no encoder plugin installed here
        pytest.skip(f"cannot encode {syntax}: {e}")
    ds.save_as(tmp_path / "c.dcm", enforce_file_format=True)
    img = load_ct_series(tmp_path / "c.dcm")
    assert np.array_equal(img[0, :, :, 0].numpy(), expected_hu(pydicom.dcmread(CT_SMALL)))
    assert img.meta["transfer_syntax"] == syntax


def test_shuffled_names_load_in_position_order(tmp_path: Path) -> None:
    z = [-20.0, -17.5, -15.0, -12.5, -10.0, -7.5]
    order = [3, 0, 5, 1, 4, 2]  # written (and numbered) out of position order
    pixels = write_series(tmp_path / "s", [z[i] for i in order])
    img = load_ct_series(tmp_path / "s")
    assert img.shape == (1, 96, 128, 6)
    np.testing.assert_allclose(img.meta["spacing"], [0.6, 0.7, 2.5])
    np.testing.assert_allclose(img.affine.numpy(), [[-0.6, 0, 0, 50.0], [0, -0.7, 0, 40.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])
    for k in range(6):
        written = order.index(k)  # the file that sits at z[k]
        assert np.array_equal(img[0, :, :, k].numpy(), (pixels[written] - 1024.0).T)


def test_negative_slice_direction(tmp_path: Path) -> None:
    """InstanceNumber runs head to feet; K still runs along the normal, so the affine's z-step is +2.5."""
    pixels = write_series(tmp_path / "down", [10.0, 7.5, 5.0, 2.5])
    img = load_ct_series(tmp_path / "down")
    np.testing.assert_allclose(img.affine[:3, 2].numpy(), [0, 0, 2.5])
    np.testing.assert_allclose(img.affine[2, 3].item(), 2.5)
    assert np.array_equal(img[0, :, :, 0].numpy(), (pixels[3] - 1024.0).T)


def test_flipped_column_cosine_orders_along_the_normal(tmp_path: Path) -> None:
    """Column cosine (0, -1, 0): the normal is -z, so K runs from the highest z down."""
    pixels = write_series(tmp_path / "flip", [0.0, 2.5, 5.0], orientation=[1.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    img = load_ct_series(tmp_path / "flip")
    a = img.affine.numpy()
    np.testing.assert_allclose(a[:3, :3], [[-0.6, 0, 0], [0, 0.7, 0], [0, 0, -2.5]])
    np.testing.assert_allclose(a[:3, 3], [50.0, 40.0, 5.0])
    assert np.array_equal(img[0, :, :, 0].numpy(), (pixels[2] - 1024.0).T)
    # every voxel centre maps where its file says: slice k=1 is the file at z=2.5
    assert np.allclose((a @ [0, 0, 1, 1])[:3], [50.0, 40.0, 2.5])


@pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")
def test_matches_monai_pydicom_reader(tmp_path: Path) -> None:
    from monai.transforms import LoadImage

    write_series(tmp_path / "m", [0.0, 2.5, 5.0, 7.5])  # InstanceNumber in position order: MONAI sorts by it
    ours = load_ct_series(tmp_path / "m")
    theirs = LoadImage(reader="PydicomReader", image_only=True, ensure_channel_first=True)(str(tmp_path / "m"))
    assert ours.shape == theirs.shape and ours.is_contiguous()
    assert torch.equal(ours.as_tensor(), theirs.as_tensor().float())
    np.testing.assert_allclose(ours.affine.numpy(), theirs.affine.numpy(), atol=1e-6)


def test_fractional_rescale_is_exact(tmp_path: Path) -> None:
    def edit(k: int, ds: Dataset) -> None:
        ds.RescaleSlope, ds.RescaleIntercept = ("0.5", "-1000.3") if k == 1 else ("1", "-1024")

    write_series(tmp_path / "r", [0.0, 1.0, 2.0], edit=edit)
    img = load_ct_series(tmp_path / "r")
    for f in (tmp_path / "r").iterdir():
        ds = pydicom.dcmread(f)
        assert np.array_equal(img[0, :, :, int(ds.InstanceNumber) - 1].numpy(), expected_hu(ds))


@pytest.mark.parametrize("signed", [True, False])
def test_unused_high_bits_handled_like_pydicom(tmp_path: Path, signed: bool) -> None:
    """12 bits stored in 16 with junk in the high bits: same values as ``pixel_array`` gives."""

    def edit(k: int, ds: Dataset) -> None:
        rng = np.random.default_rng(k)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
        ds.PixelData = rng.integers(0, 2**16, size=(128, 96), dtype=np.uint16).tobytes()

    write_series(tmp_path / "b", [0.0, 1.0], edit=edit)
    img = load_ct_series(tmp_path / "b")
    for f in (tmp_path / "b").iterdir():
        ds = pydicom.dcmread(f)
        assert np.array_equal(img[0, :, :, int(ds.InstanceNumber) - 1].numpy(), expected_hu(ds))


def test_subfolder_hidden_files_and_dicomdir(tmp_path: Path) -> None:
    write_series(tmp_path / "s" / "part1", [0.0, 2.5])
    for f in (tmp_path / "s" / "part1").iterdir():  # half the slices one level down, half at the top
        if pydicom.dcmread(f).InstanceNumber == 2:
            f.rename(tmp_path / "s" / f.name)
    (tmp_path / "s" / ".DS_Store").write_bytes(b"\0junk")
    (tmp_path / "s" / "DICOMDIR").write_bytes(b"not parsed")
    img = load_ct_series(tmp_path / "s")
    assert img.meta["n_slices"] == 2


def test_enhanced_multiframe_ct_loads_like_its_slices(tmp_path: Path) -> None:
    from highdicom import UID
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    write_series(tmp_path / "s", [5.0, 0.0, 7.5, 2.5])
    slices = [pydicom.dcmread(f) for f in sorted((tmp_path / "s").iterdir())]
    enhanced = LegacyConvertedEnhancedCTImage(slices, series_instance_uid=UID(), series_number=2, sop_instance_uid=UID(), instance_number=1)
    enhanced.save_as(tmp_path / "enhanced.dcm")
    multi = load_ct_series(tmp_path / "enhanced.dcm")
    single = load_ct_series(tmp_path / "s")
    assert torch.equal(multi.as_tensor(), single.as_tensor())
    np.testing.assert_allclose(multi.affine.numpy(), single.affine.numpy())
    np.testing.assert_allclose(multi.meta["spacing"], [0.6, 0.7, 2.5])


# --- refusals ------------------------------------------------------------------------------------------------


def test_mr_is_refused() -> None:
    msg = refusal(NotCTError, MR_SMALL, "modality is MR, expected CT")
    assert "MR_small.dcm" in msg


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_text("x")
    refusal(DicomError, tmp_path / "empty", "empty folder")
    refusal(DicomError, tmp_path / "nowhere", "no such file or folder")


def test_not_dicom_file_is_named(tmp_path: Path) -> None:
    write_series(tmp_path / "s", [0.0, 2.5])
    (tmp_path / "s" / "notes.txt").write_text("not an image")
    refusal(DicomError, tmp_path / "s" / "notes.txt", "not a DICOM file")


def test_truncated_file_is_named(tmp_path: Path) -> None:
    write_series(tmp_path / "s", [0.0, 2.5, 5.0])
    victim = sorted((tmp_path / "s").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-5000])
    refusal(DicomError, victim, "pixel data truncated")
    victim.write_bytes(victim.read_bytes()[:1000])  # cut inside the header: no pixel data at all
    refusal(DicomError, victim, "no pixel data")


def test_undecodable_compressed_file_is_named(tmp_path: Path) -> None:
    ds = pydicom.dcmread(CT_SMALL)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8 this is not a JPEG-LS stream"])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    refusal(DicomError, tmp_path / "bad.dcm", "cannot decode pixel data", "JPEG-LS")


def test_missing_slice_names_the_gap(tmp_path: Path) -> None:
    write_series(tmp_path / "gap", [-125.0, -122.5, -120.0, -115.0, -112.5])
    refusal(SeriesGeometryError, tmp_path / "gap", "slice missing between z=-120.0 and z=-115.0 mm", "gap 5.0 mm", "median spacing 2.5 mm")


def test_duplicate_positions(tmp_path: Path) -> None:
    write_series(tmp_path / "dup", [0.0, 2.5, 2.5, 5.0])
    refusal(SeriesGeometryError, tmp_path / "dup", "duplicate slice position z=2.50")


def test_two_series_in_one_folder(tmp_path: Path) -> None:
    def edit(k: int, ds: Dataset) -> None:
        if k == 2:
            ds.SeriesInstanceUID = "1.2.3.4"

    write_series(tmp_path / "two", [0.0, 2.5, 5.0], edit=edit)
    refusal(SeriesGeometryError, tmp_path / "two", "2 series in one folder", "1.2.3.4 (1 file)")


def test_inconsistent_orientation_names_the_slice(tmp_path: Path) -> None:
    def edit(k: int, ds: Dataset) -> None:
        if k == 1:
            ds.ImageOrientationPatient = [0.9848, 0.1736, 0.0, -0.1736, 0.9848, 0.0]  # 10 degrees in-plane

    write_series(tmp_path / "o", [0.0, 2.5, 5.0], edit=edit)
    msg = refusal(SeriesGeometryError, tmp_path / "o", "ImageOrientationPatient", "0.9848")
    assert ".dcm" in msg  # the offending file


def test_inconsistent_pixel_spacing(tmp_path: Path) -> None:
    def edit(k: int, ds: Dataset) -> None:
        if k == 2:
            ds.PixelSpacing = [0.8, 0.8]

    write_series(tmp_path / "p", [0.0, 2.5, 5.0], edit=edit)
    refusal(SeriesGeometryError, tmp_path / "p", "PixelSpacing [0.8, 0.8] differs from [0.7, 0.6]")


def test_inconsistent_size(tmp_path: Path) -> None:
    def edit(k: int, ds: Dataset) -> None:
        if k == 0:
            ds.Columns = 64
            ds.PixelData = np.zeros((128, 64), np.int16).tobytes()

    write_series(tmp_path / "z", [0.0, 2.5, 5.0], edit=edit)
    refusal(SeriesGeometryError, tmp_path / "z", "Rows/Columns")
