"""Load one CT series as a MONAI ``MetaTensor`` in Hounsfield units with a RAS affine.

Why not MONAI's ``PydicomReader``: it orders slices by InstanceNumber (not by position), accepts gaps, mixed
series and non-CT data silently, and converts every header to JSON (slow). This loader reads each file once,
checks the series before it trusts it, and orders slices by their position along the slice normal, which is
the only ordering the geometry guarantees.

Output convention is MONAI's (``LoadImage`` with its readers' defaults), so MONAI transforms apply unchanged:
shape (1, I, J, K) with I the column index, J the row index, K the slice index; ``affine`` maps (i, j, k, 1)
to RAS millimetres (the DICOM LPS affine with its x and y rows negated).

Example:
    >>> img = load_ct_series("site_a/dicom/case_0001")  # doctest: +SKIP
    >>> img.shape, img.meta["spacing"]  # doctest: +SKIP
    (torch.Size([1, 256, 256, 120]), array([1.3, 1.3, 2.5]))
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless

from workbench.errors import DicomError, NotCTError, SeriesGeometryError

ENHANCED_CT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT",
}
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR: an index, not an image
ORIENTATION_TOL = 1e-3  # direction cosines are written with ~6 decimals; scanners round differently
SPACING_TOL_MM = 1e-3
MAX_HU_MAGNITUDE = 1e30  # far past any CT's range, far below float32's overflow (3.4e38)
DUPLICATE_TOL_MM = 1e-2  # two slices closer than this along the normal sit at the same position
GAP_FACTOR = 1.5  # a step larger than this times the median step means a slice is missing
# The only elements parsed: geometry, rescale, series identity and what the pixel decoders need. Skipping the
# rest makes ``dcmread`` about a third faster, and no patient identifier is ever decoded.
READ_TAGS = [
    "SpecificCharacterSet", "SOPClassUID", "Modality", "SeriesInstanceUID", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept",
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence", "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PixelData",
]
NATIVE_LE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}


@dataclass
class _Frames:
    """Header facts of the slices (one row per slice, in reading order), gathered before any pixel is decoded."""

    names: list[str]  # "file" or "file frame N", for messages
    positions: np.ndarray  # (N, 3) ImagePositionPatient, LPS mm
    orientations: np.ndarray  # (N, 6) row cosines then column cosines
    pixel_spacings: np.ndarray  # (N, 2) PixelSpacing: (between rows, between columns) mm
    shapes: np.ndarray  # (N, 2) Rows, Columns
    slopes: np.ndarray  # (N,)
    intercepts: np.ndarray  # (N,)
    thickness: float | None  # SliceThickness of the first slice, used only for a single-slice series


def load_ct_series(path: str | Path) -> MetaTensor:
    """Read one CT series (a folder of single-frame slices, or one enhanced multi-frame CT file) in HU.

    Args:
        path: a folder holding one series (files may also sit one subfolder deep; hidden files and DICOMDIR
            are skipped), or a single DICOM file (a 2D CT slice or an enhanced multi-frame CT).

    Returns:
        MetaTensor (1, I, J, K) float32 in HU (per-slice RescaleSlope/Intercept applied), ``affine`` (4, 4)
        float64 mapping (i, j, k, 1) to RAS mm; meta ``spacing`` (column, row, slice mm), ``space`` "RAS",
        ``series_instance_uid``, ``modality``, ``n_slices``, ``transfer_syntax``, ``original_affine``,
        ``spatial_shape``, ``filename_or_obj``. No patient identifiers.

    Raises:
        DicomError: no files, a file that is not DICOM, truncated or undecodable.
        NotCTError: the series is not CT.
        SeriesGeometryError: several series, inconsistent orientation / pixel spacing / size, duplicate or
            missing slices.
    """
    root = Path(path)
    files = _list_files(root)
    datasets = [(f, ds) for f in files if (ds := _read(f)) is not None]
    if not datasets:
        raise DicomError(f"{root}: no DICOM files (only a DICOMDIR)")
    _check_one_series(root, datasets)
    for f, ds in datasets:
        modality = ds.get("Modality")
        if modality != "CT":
            raise NotCTError(f"{f}: modality is {modality or 'missing'}, expected CT")

    multi = [(f, ds) for f, ds in datasets if _is_multiframe(ds, f)]
    if multi and len(datasets) > 1:
        raise SeriesGeometryError(f"{root}: multi-frame file {multi[0][0].name} mixed with {len(datasets) - 1} other files")
    frames = _enhanced_frames(*multi[0]) if multi else _single_frames(datasets)
    order, affine_lps = _geometry(root, frames)
    hu = _assemble_hu(datasets, frames, order)  # (I, J, K)

    affine = affine_lps.copy()
    affine[:2] *= -1.0  # LPS -> RAS
    syntaxes = sorted({str(ds.file_meta.TransferSyntaxUID) for _, ds in datasets})
    first = datasets[0][1]
    meta = {
        "spacing": np.linalg.norm(affine[:3, :3], axis=0),
        "space": "RAS",
        "series_instance_uid": str(first.get("SeriesInstanceUID", "")),
        "modality": "CT",
        "n_slices": int(hu.shape[2]),
        "transfer_syntax": ",".join(syntaxes),
        "original_affine": affine.copy(),
        "spatial_shape": np.array(hu.shape),
        "original_channel_dim": 0,  # already channel-first: EnsureChannelFirst leaves it alone
        "filename_or_obj": str(root),
    }
    return MetaTensor(torch.from_numpy(hu[None]), affine=torch.from_numpy(affine), meta=meta)


def _list_files(root: Path) -> list[Path]:
    """The series' files: the folder and its direct subfolders, without hidden files and DICOMDIR."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DicomError(f"{root}: no such file or folder")

    def visible(p: Path) -> bool:
        return not p.name.startswith(".") and p.name.upper() != "DICOMDIR"

    files: list[Path] = []
    for entry in sorted(root.iterdir()):
        if not visible(entry):
            continue
        if entry.is_file():
            files.append(entry)
        elif entry.is_dir():
            files.extend(p for p in sorted(entry.iterdir()) if p.is_file() and visible(p))
    if not files:
        raise DicomError(f"{root}: empty folder, no DICOM files")
    return files


def _read(file: Path) -> Dataset | None:
    """One full read (header and pixel bytes); None for a DICOMDIR. Wraps every pydicom failure."""
    try:
        ds = pydicom.dcmread(io.BytesIO(file.read_bytes()), specific_tags=READ_TAGS)  # one read, parsed in memory
        for _ in (*ds.file_meta, *ds):  # pydicom converts values when first touched: a corrupt one fails here
            pass
    except InvalidDicomError:
        raise DicomError(f"{file}: not a DICOM file (no 'DICM' marker)") from None
    except Exception as e:  # pydicom raises many types on broken bytes; all mean the same to the user
        raise DicomError(f"{file}: unreadable DICOM file ({_one_line(e)})") from None
    if ds.file_meta.get("MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY:
        return None
    if "PixelData" not in ds or "TransferSyntaxUID" not in ds.file_meta:
        raise DicomError(f"{file}: no pixel data (file truncated, or not an image)")
    return ds


def _check_one_series(root: Path, datasets: list[tuple[Path, Dataset]]) -> None:
    counts: dict[str, int] = {}
    for _, ds in datasets:
        uid = str(ds.get("SeriesInstanceUID", "?"))
        counts[uid] = counts.get(uid, 0) + 1
    if len(counts) > 1:
        listed = ", ".join(f"{uid} ({n} file{'s' * (n != 1)})" for uid, n in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
        more = ", ..." if len(counts) > 3 else ""
        raise SeriesGeometryError(f"{root}: {len(counts)} series in one folder, expected one: {listed}{more}")


def _is_multiframe(ds: Dataset, file: Path) -> bool:
    return str(ds.get("SOPClassUID", "")) in ENHANCED_CT_CLASSES or _frame_count(ds, file) > 1


def _frame_count(ds: Dataset, file: Path) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as e:
        raise DicomError(f"{file}: NumberOfFrames is not a whole number ({_one_line(e)})") from None


def _numbers(values: object, count: int, keyword: str, where: str) -> list[float]:
    """A header's ``count`` numbers: a value of another length, or one that is not a finite number, is refused
    here with the file and the element (every consumer of the geometry assumes finite numbers)."""
    items = list(values) if isinstance(values, (list, tuple, MultiValue)) else [values]
    numbers = [float(v) for v in items]  # type: ignore[arg-type]
    if len(numbers) != count:
        raise DicomError(f"{where}: {keyword} has {len(numbers)} values, expected {count}")
    if not all(np.isfinite(numbers)):
        raise DicomError(f"{where}: {keyword} {_fmt(np.asarray(numbers))} is not finite")
    return numbers


def _thickness(value: object) -> float | None:
    """SliceThickness when it is a positive finite number (it only sets a single slice's step), else None."""
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return t if np.isfinite(t) and t > 0 else None


def _single_frames(datasets: list[tuple[Path, Dataset]]) -> _Frames:
    """Header facts of single-frame slices, one file each."""
    names, pos, ori, spc, shp, slope, icpt = [], [], [], [], [], [], []
    for f, ds in datasets:
        try:
            for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
                if keyword not in ds:
                    raise DicomError(f"{f}: missing {keyword}, cannot place the slice")
            names.append(str(f))
            pos.append(_numbers(ds.ImagePositionPatient, 3, "ImagePositionPatient", str(f)))
            ori.append(_numbers(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", str(f)))
            spc.append(_numbers(ds.PixelSpacing, 2, "PixelSpacing", str(f)))
            shp.append([int(ds.Rows), int(ds.Columns)])
            slope += _numbers(ds.get("RescaleSlope", 1.0), 1, "RescaleSlope", str(f))
            icpt += _numbers(ds.get("RescaleIntercept", 0.0), 1, "RescaleIntercept", str(f))
        except DicomError:
            raise
        except Exception as e:
            raise DicomError(f"{f}: bad geometry or rescale header ({_one_line(e)})") from None
    thickness = _thickness(datasets[0][1].get("SliceThickness"))
    return _Frames(names, np.asarray(pos, dtype=float), np.asarray(ori, dtype=float), np.asarray(spc, dtype=float),
                   np.asarray(shp), np.asarray(slope), np.asarray(icpt), thickness)


def _enhanced_frames(file: Path, ds: Dataset) -> _Frames:
    """Header facts of an enhanced multi-frame CT, from its shared and per-frame functional groups."""
    if str(ds.get("SOPClassUID", "")) not in ENHANCED_CT_CLASSES:
        raise DicomError(f"{file}: multi-frame file of SOP class {ds.get('SOPClassUID', '?')} is not an enhanced CT")
    n = _frame_count(ds, file)
    try:
        shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    except Exception as e:
        raise DicomError(f"{file}: bad functional groups ({_one_line(e)})") from None
    if len(per_frame) != n:
        raise DicomError(f"{file}: {len(per_frame)} per-frame functional groups for {n} frames")

    def item(i: int, sequence: str) -> Dataset | None:
        seq = per_frame[i].get(sequence) or shared.get(sequence)
        return seq[0] if seq else None

    pos, ori, spc, slope, icpt = [], [], [], [], []
    thickness = None
    try:
        for i in range(n):
            plane, orient, measures = item(i, "PlanePositionSequence"), item(i, "PlaneOrientationSequence"), item(i, "PixelMeasuresSequence")
            if plane is None or orient is None or measures is None:
                raise DicomError(f"{file}: frame {i + 1} lacks its plane position, orientation or pixel measures")
            transform = item(i, "PixelValueTransformationSequence") or Dataset()
            where = f"{file} frame {i + 1}"
            pos.append(_numbers(plane.ImagePositionPatient, 3, "ImagePositionPatient", where))
            ori.append(_numbers(orient.ImageOrientationPatient, 6, "ImageOrientationPatient", where))
            spc.append(_numbers(measures.PixelSpacing, 2, "PixelSpacing", where))
            slope += _numbers(transform.get("RescaleSlope", 1.0), 1, "RescaleSlope", where)
            icpt += _numbers(transform.get("RescaleIntercept", 0.0), 1, "RescaleIntercept", where)
            if i == 0:
                thickness = _thickness(measures.get("SliceThickness"))
        rows, cols = int(ds.Rows), int(ds.Columns)
    except DicomError:
        raise
    except Exception as e:
        raise DicomError(f"{file}: bad functional groups ({_one_line(e)})") from None
    names = [f"{file} frame {i + 1}" for i in range(n)]
    shapes = np.tile([rows, cols], (n, 1))
    return _Frames(names, np.asarray(pos, dtype=float), np.asarray(ori, dtype=float), np.asarray(spc, dtype=float),
                   shapes, np.asarray(slope), np.asarray(icpt), thickness)


def _geometry(root: Path, fr: _Frames) -> tuple[np.ndarray, np.ndarray]:
    """Check the slices form one regular stack; return their order along the normal and the LPS affine."""
    for values, what, low in ((fr.pixel_spacings, "PixelSpacing", 0.0), (fr.shapes, "Rows/Columns", 0)):
        bad = np.flatnonzero(np.any(values <= low, axis=1))
        if bad.size:
            raise SeriesGeometryError(f"{fr.names[bad[0]]}: {what} {_fmt(values[bad[0]])} must be positive"
                                      f"{_more(bad.size, 'slices')}")
    # stored values reach at most 2**16 in magnitude; a rescale that overflows float32 HU is no CT's
    bad = np.flatnonzero(np.abs(fr.slopes) * 2.0**16 + np.abs(fr.intercepts) > MAX_HU_MAGNITUDE)
    if bad.size:
        raise DicomError(f"{fr.names[bad[0]]}: RescaleSlope {fr.slopes[bad[0]]:g} and RescaleIntercept "
                         f"{fr.intercepts[bad[0]]:g} give HU beyond any CT's{_more(bad.size, 'slices')}")
    for values, what, tol in ((fr.orientations, "ImageOrientationPatient", ORIENTATION_TOL),
                              (fr.pixel_spacings, "PixelSpacing", SPACING_TOL_MM),
                              (fr.shapes, "Rows/Columns", 0)):
        bad = np.flatnonzero(np.abs(values - values[0]).max(axis=1) > tol)
        if bad.size:
            raise SeriesGeometryError(
                f"{fr.names[bad[0]]}: {what} {_fmt(values[bad[0]])} differs from {_fmt(values[0])} "
                f"of {fr.names[0]}{_more(bad.size, 'slices differ')}")
    row, col = fr.orientations[0, :3], fr.orientations[0, 3:]
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
        raise SeriesGeometryError(f"{fr.names[0]}: ImageOrientationPatient {_fmt(fr.orientations[0])} is not two orthogonal unit vectors")
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)

    along = fr.positions @ normal
    order = np.argsort(along, kind="stable")
    s = along[order]
    axis = "z" if abs(normal[2]) > 0.9 else "position"
    n = len(order)
    if n > 1:
        steps = np.diff(s)
        dup = np.flatnonzero(steps <= DUPLICATE_TOL_MM)
        if dup.size:
            a, b = order[dup[0]], order[dup[0] + 1]
            raise SeriesGeometryError(
                f"{root}: duplicate slice position {axis}={s[dup[0]]:.2f} mm in {Path(fr.names[a]).name} and "
                f"{Path(fr.names[b]).name}{_more(dup.size, 'duplicates')}")
        median = float(np.median(steps))
        gaps = np.flatnonzero(steps > GAP_FACTOR * median)
        if gaps.size:
            g = gaps[0]
            raise SeriesGeometryError(
                f"{root}: slice missing between {axis}={s[g]:.1f} and {axis}={s[g + 1]:.1f} mm "
                f"(gap {steps[g]:.1f} mm, median spacing {median:.1f} mm){_more(gaps.size, 'gaps')}")
        step = (fr.positions[order[-1]] - fr.positions[order[0]]) / (n - 1)  # follows a gantry tilt, unlike the normal
    else:
        step = normal * (fr.thickness or 1.0)

    affine = np.eye(4)
    affine[:3, 0] = row * fr.pixel_spacings[0, 1]  # i runs along a row: column spacing
    affine[:3, 1] = col * fr.pixel_spacings[0, 0]  # j runs down a column: row spacing
    affine[:3, 2] = step
    affine[:3, 3] = fr.positions[order[0]]
    return order, affine


def _assemble_hu(datasets: list[tuple[Path, Dataset]], fr: _Frames, order: np.ndarray) -> np.ndarray:
    """Decode the pixels in position order and rescale to HU: float32 (I, J, K), C-contiguous like MONAI's.

    Each slice is written transposed straight into the output (no (K, J, I) stack, no second copy).
    """
    rows, cols = (int(v) for v in fr.shapes[0])
    if len(datasets) == 1 and _is_multiframe(datasets[0][1], datasets[0][0]):
        raw = _decode(*datasets[0])
        if raw.size != len(fr.names) * rows * cols:
            raise DicomError(f"{datasets[0][0]}: {raw.size} decoded pixels for {len(fr.names)} frames of "
                             f"{rows} x {cols}")
        raw = raw.reshape(len(fr.names), rows, cols)  # (frames, J, I)
        slices: Iterator[np.ndarray] = (raw[i] for i in order)
    else:
        slices = (_decoded_slice(datasets[i][0], datasets[i][1], rows, cols) for i in order)
    first = next(slices)  # decoded before the volume is allocated: an absurd Rows/Columns fails on the file's bytes
    hu = np.empty((cols, rows, len(order)), dtype=np.float32)  # (I, J, K)
    slopes, intercepts = fr.slopes[order], fr.intercepts[order]
    integral = bool(np.all(slopes == 1.0) and np.all(intercepts == np.round(intercepts)) and np.all(np.abs(intercepts) < 2**23))
    for k, pixels in enumerate(itertools.chain([first], slices)):
        if integral and pixels.dtype.itemsize <= 2:
            hu[:, :, k] = pixels.T  # exact in float32: integers below 2**24; the intercept is added below
        else:  # float64, so HU equals value * slope + intercept as computed in double precision
            hu[:, :, k] = pixels.T * slopes[k] + intercepts[k]
            intercepts[k] = 0.0
    if integral:
        hu += intercepts.astype(np.float32)
    return hu


def _decoded_slice(file: Path, ds: Dataset, rows: int, cols: int) -> np.ndarray:
    """One single-frame slice's stored values, refused when the decoder's shape is not the header's."""
    pixels = _decode(file, ds)
    if pixels.shape != (rows, cols):
        raise DicomError(f"{file}: decoded pixels of shape {tuple(pixels.shape)}, the header says {rows} x {cols}")
    return pixels


def _decode(file: Path, ds: Dataset) -> np.ndarray:
    """Stored pixel values (J, I) or (frames, J, I); every failure named by file.

    Native little-endian 16-bit data is read straight from the bytes (what ``pixel_array`` returns, without its
    per-call overhead, a quarter of the load time); everything else goes through pydicom's backends and the
    installed plugins (RLE, JPEG-LS, JPEG 2000; JPEG lossless needs pylibjpeg-libjpeg or GDCM).
    """
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    try:
        samples, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated)
        rows, cols, frames = int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames", 1) or 1)
        signed, bits_stored = int(ds.get("PixelRepresentation", 0)) == 1, int(ds.get("BitsStored", 16))
    except Exception as e:
        raise DicomError(f"{file}: bad image pixel header ({_one_line(e)})") from None
    if samples != 1:
        raise DicomError(f"{file}: {samples} samples per pixel, expected a greyscale CT image")
    if not syntax.is_compressed:  # a truncated file still parses; say so plainly rather than via the decoder
        expected = rows * cols * frames * bits // 8
        stored = len(ds.PixelData or b"")  # an empty Pixel Data element reads as None
        if stored < expected:
            raise DicomError(f"{file}: pixel data truncated ({stored} of {expected} bytes)")
        if syntax in NATIVE_LE and bits == 16:
            return _native16(ds, rows, cols, frames, signed, bits_stored)
    if syntax == JPEGLSLossless and frames == 1 and bits == 16 and (not signed or bits_stored == 16):
        fast = _jpegls16(ds, rows, cols, signed)
        if fast is not None:
            return fast
    try:
        return ds.pixel_array
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - a Rust decoder's panic on damaged bytes is a BaseException (pyo3)
        raise DicomError(f"{file}: cannot decode pixel data ({syntax.name}): {_one_line(e)}") from None


def _jpegls16(ds: Dataset, rows: int, cols: int, signed: bool) -> np.ndarray | None:
    """One 16-bit JPEG-LS frame through CharLS directly: the same values as ``pixel_array`` at about a third
    of its cost (pydicom's generic decoder pipeline dominates for small frames). None: use ``pixel_array``."""
    try:
        import jpeg_ls
        from pydicom.encaps import generate_frames

        buf, info = jpeg_ls.decode_buffer(next(generate_frames(ds.PixelData, number_of_frames=1)))
    except Exception:  # noqa: BLE001 - anything odd: the generic path decodes it or names the failure
        return None
    if info.get("width") != cols or info.get("height") != rows or info.get("components") != 1 or len(buf) != rows * cols * 2:
        return None
    return np.frombuffer(buf, dtype="<i2" if signed else "<u2").reshape(rows, cols)


def _native16(ds: Dataset, rows: int, cols: int, frames: int, signed: bool, bits_stored: int) -> np.ndarray:
    """Native 16-bit pixels as ``pixel_array`` gives them, unused high bits cleared or sign-extended likewise."""
    pixels = np.frombuffer(ds.PixelData, dtype="<i2" if signed else "<u2", count=rows * cols * frames)
    unused = 16 - bits_stored
    if 0 < unused < 16:
        pixels = (pixels << unused) >> unused if signed else pixels & ((1 << (16 - unused)) - 1)
    return pixels.reshape((frames, rows, cols) if frames > 1 else (rows, cols))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _more(count: int, what: str) -> str:
    """A count worth adding only when the first offender is not the only one."""
    return f" ({count} {what} in all)" if count > 1 else ""


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in np.asarray(values, dtype=float)) + "]"
