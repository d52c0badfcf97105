"""Write a rendered chest CT as a DICOM series: one CT Image Storage file per slice, PHI in the headers.

The headers carry a fake patient's identity on purpose (a hospital's real data does), so that ingestion,
de-identification and the PHI tests meet what they will meet in a hospital. The series is shaped to make
careless loaders fail: file names are a hash of the SOP Instance UID (they never sort in slice order),
InstanceNumber runs in scan direction (head first or feet first), and pixels are stored unsigned with a
RescaleIntercept of -1024, as most scanners write them. Each file is written under a temporary name, then
renamed, so a killed run never leaves a half-written slice.

Every file passes dciodvfy (dicom3tools) without errors in all three transfer syntaxes.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.pixels import get_encoder
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from workbench.atomic import write_bytes
from workbench.cohort.phantom import RenderedCT
from workbench.cohort.spec import PatientIdentity, ScannerProfile
from workbench.errors import CohortError

_SYNTAX = {"jpegls": JPEGLSLossless, "rle": RLELossless, "explicit": ExplicitVRLittleEndian}
_PLUGIN = {"jpegls": "pyjpegls", "rle": "pylibjpeg"}  # pylibjpeg-rle: ~10x faster than pydicom's own encoder
_INTERCEPT = -1024  # stored = HU + 1024 in 0..4095: 12 bits, as CT scanners write it
_VERSION = "workbench-phantom 1.0"
_CHARSET = "ISO_IR 192"  # UTF-8: the names carry accents
# Elements that differ per slice, in tag order; the shared header is encoded once around them.
_PER_SLICE = (0x00080018, 0x00200013, 0x00200032, 0x00201041, 0x7FE00010)


def _uid(seed: str, *parts: object) -> str:
    """A UID fixed by the seed: the same case gets the same UIDs in every run."""
    return str(generate_uid(entropy_srcs=[seed, *map(str, parts)]))


def _da(d: date) -> str:
    return d.strftime("%Y%m%d")


def _ds(v: float) -> str:
    """A decimal string that round-trips the value (DS allows 16 characters)."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def dicom_name(identity: PatientIdentity) -> str:
    """PatientName as DICOM writes it: Last^First."""
    return f"{identity.last_name}^{identity.first_name}"


def physician_name(identity: PatientIdentity) -> str:
    """ReferringPhysicianName: "First Last" becomes Last^First. First names are one word, family names may
    be several ("De la Cruz"), so the split is at the first space."""
    first, _, last = identity.physician.partition(" ")
    return f"{last}^{first}" if last else first


def dicom_phi_strings(identity: PatientIdentity) -> list[str]:
    """Every PHI string the headers carry, exactly as written, plus the name parts a reader shows on their
    own (a de-identifier that blanks "Last^First" but leaves "Last" elsewhere still leaks)."""
    values = [
        dicom_name(identity), identity.last_name, identity.first_name,
        identity.mrn, _da(identity.birth_date), identity.accession,
        physician_name(identity), identity.institution, _da(identity.visit_date),
    ]
    return list(dict.fromkeys(v for v in values if v))


def _seed_int(seed: str, what: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{what}".encode()).digest()[:4], "big")


def _series_header(ct: RenderedCT, scanner: ScannerProfile, identity: PatientIdentity, uid_seed: str,
                   description: str, position: str) -> Dataset:
    """The elements every slice shares, module by module (CT Image IOD, PS3.3 A.3)."""
    ds = Dataset()
    ds.SpecificCharacterSet = _CHARSET
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    visit, minute = _da(identity.visit_date), _seed_int(uid_seed, "time") % 540
    time = f"{8 + minute // 60:02d}{minute % 60:02d}{_seed_int(uid_seed, 's') % 60:02d}"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = visit
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AccessionNumber = identity.accession
    ds.Modality = "CT"
    ds.Manufacturer = scanner.manufacturer
    ds.InstitutionName = identity.institution
    ds.ReferringPhysicianName = physician_name(identity)
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST"
    ds.SeriesDescription = description
    ds.ManufacturerModelName = scanner.model
    # Patient (PHI)
    ds.PatientName = dicom_name(identity)
    ds.PatientID = identity.mrn
    ds.PatientBirthDate = _da(identity.birth_date)
    ds.PatientSex = identity.sex
    # acquisition
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = _ds(ct.slice_spacing_mm)
    ds.KVP = _ds(scanner.kvp)
    ds.SpacingBetweenSlices = _ds(ct.slice_spacing_mm)
    ds.DataCollectionDiameter = _ds(500.0)
    ds.SoftwareVersions = _VERSION
    ds.ReconstructionDiameter = _ds(ct.hu.shape[2] * ct.pixel_spacing_mm)
    ds.GantryDetectorTilt = "0"
    ds.RotationDirection = "CW"
    ds.ConvolutionKernel = "SOFT" if scanner.kernel_sigma_mm >= 0.85 else "STANDARD" if scanner.kernel_sigma_mm >= 0.65 else "SHARP"
    ds.PatientPosition = position
    ds.StudyInstanceUID = _uid(uid_seed, "study")
    ds.SeriesInstanceUID = _uid(uid_seed, "series")
    ds.StudyID = f"{_seed_int(uid_seed, 'study-id') % 100000:05d}"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = _uid(uid_seed, "frame")
    ds.PositionReferenceIndicator = ""
    # image pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(ct.hu.shape[1]), int(ct.hu.shape[2])
    ds.PixelSpacing = [_ds(ct.pixel_spacing_mm), _ds(ct.pixel_spacing_mm)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = ["-600", "40"]
    ds.WindowWidth = ["1500", "400"]
    ds.RescaleIntercept = str(_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"]
    ds.LossyImageCompression = "00"
    return ds


def _encode(elements, encodings: list[str]) -> bytes:
    """Explicit VR little endian bytes of ``elements`` (in the order given)."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    for elem in elements:
        write_data_element(fp, elem, encodings)
    return fp.getvalue()


def _header_chunks(base: Dataset, split_at: list[int]) -> list[bytes]:
    """The shared elements, encoded once, cut into the runs that fall between the per-slice tags.

    pydicom spends ~5 ms a file re-encoding ~70 identical elements; encoding them once and joining bytes
    per slice makes writing a series about twice as fast (the codec is then most of the time)."""
    encodings = [_CHARSET]
    elems = sorted(base, key=lambda e: e.tag)
    bounds = [0, *split_at, 0xFFFFFFFF]
    return [_encode([e for e in elems if lo < e.tag < hi], encodings) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def write_ct_series(out_dir: Path, ct: RenderedCT, scanner: ScannerProfile, identity: PatientIdentity, *,
                    uid_seed: str, series_description: str = "CHEST CT NODULE") -> list[Path]:
    """Write ``ct`` into ``out_dir``, one file per slice in the scanner's transfer syntax; return the paths
    in slice order (slice 0, the most inferior, first).

    Example:
        >>> paths = write_ct_series(tmp, ct, scanner, identity, uid_seed="7:hospital_a-0001")  # doctest: +SKIP
    """
    if scanner.transfer_syntax not in _SYNTAX:
        raise CohortError(f"unknown transfer syntax {scanner.transfer_syntax!r} (expected one of {sorted(_SYNTAX)})")
    if ct.hu.dtype != np.int16 or ct.hu.ndim != 3:
        raise CohortError(f"expected an int16 (slices, rows, cols) volume, got {ct.hu.dtype} {ct.hu.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    syntax = _SYNTAX[scanner.transfer_syntax]
    position = "FFS" if _seed_int(uid_seed, "position") % 5 == 0 else "HFS"
    base = _series_header(ct, scanner, identity, uid_seed, series_description, position)
    chunks = _header_chunks(base, list(_PER_SLICE))
    stored = (np.clip(ct.hu, -1024, 3071).astype(np.int32) - _INTERCEPT).astype(np.uint16)  # (n, rows, cols)
    encoder = None if syntax == ExplicitVRLittleEndian else get_encoder(syntax)
    pixel_kw = dict(rows=stored.shape[1], columns=stored.shape[2], samples_per_pixel=1, bits_allocated=16,
                    bits_stored=12, pixel_representation=0, photometric_interpretation="MONOCHROME2",
                    number_of_frames=1)
    n = stored.shape[0]
    x0, y0, z0 = ct.origin_lps
    paths: list[Path] = []
    for k in range(n):
        sop = _uid(uid_seed, "slice", k)
        z = _ds(z0 + k * ct.slice_spacing_mm)
        if encoder is None:
            pixels = DataElement(0x7FE00010, "OW", stored[k].tobytes())
        else:
            frame = encoder.encode(stored[k], encoding_plugin=_PLUGIN[scanner.transfer_syntax], **pixel_kw)
            pixels = DataElement(0x7FE00010, "OB", encapsulate([frame]), is_undefined_length=True)
        per_slice = [
            DataElement(0x00080018, "UI", sop),  # SOPInstanceUID
            # scanners number slices in scan order: head first counts down from the top
            DataElement(0x00200013, "IS", str(n - k if position == "HFS" else k + 1)),  # InstanceNumber
            DataElement(0x00200032, "DS", [_ds(x0), _ds(y0), z]),  # ImagePositionPatient
            DataElement(0x00201041, "DS", z),  # SliceLocation
            pixels,
        ]
        body = b"".join(c + _encode([e], [_CHARSET]) for c, e in zip(chunks[:-1], per_slice, strict=True)) + chunks[-1]
        meta = _encode([
            DataElement(0x00020001, "OB", b"\x00\x01"),  # FileMetaInformationVersion
            DataElement(0x00020002, "UI", CTImageStorage),
            DataElement(0x00020003, "UI", sop),
            DataElement(0x00020010, "UI", syntax),
            DataElement(0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID),
            DataElement(0x00020013, "SH", "WORKBENCH_1"),
        ], [])
        group_len = _encode([DataElement(0x00020000, "UL", len(meta))], [])
        name = hashlib.sha1(sop.encode()).hexdigest()[:16] + ".dcm"
        write_bytes(out_dir / name, b"\x00" * 128 + b"DICM" + group_len + meta + body)
        paths.append(out_dir / name)
    return paths
