"""Write a rendered chest CT as a DICOM series: one CT Image Storage file per slice, PHI in the headers.

The headers carry a fake patient's identity on purpose (a hospital's real data does), so that ingestion,
de-identification and the PHI tests work on what they will meet. File names are a hash of the SOP Instance
UID: they do not sort in slice order, so no loader can get away with sorting by name. Each file is written
under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    PYDICOM_IMPLEMENTATION_UID,
    RLELossless,
    generate_uid,
)

from workbench.cohort.phantom import RenderedCT
from workbench.cohort.spec import PatientIdentity, ScannerProfile

_SYNTAX = {"jpegls": JPEGLSLossless, "rle": RLELossless, "explicit": ExplicitVRLittleEndian}


def _uid(seed: str, *parts: object) -> str:
    return generate_uid(entropy_srcs=[seed, *map(str, parts)])


def _da(d) -> str:  # DICOM DA
    return d.strftime("%Y%m%d")


def dicom_name(identity: PatientIdentity) -> str:
    return f"{identity.last_name}^{identity.first_name}"


def physician_name(identity: PatientIdentity) -> str:
    first, _, last = identity.physician.partition(" ")
    return f"{last}^{first}" if last else first


def dicom_phi_strings(identity: PatientIdentity) -> list[str]:
    """Every PHI string the headers carry, as written (and the plain name, which readers display)."""
    return [
        dicom_name(identity),
        identity.full_name,
        identity.mrn,
        _da(identity.birth_date),
        identity.accession,
        physician_name(identity),
        identity.institution,
        _da(identity.visit_date),
    ]


def _series_header(ct: RenderedCT, scanner: ScannerProfile, identity: PatientIdentity, uid_seed: str,
                   description: str) -> Dataset:
    ds = Dataset()
    # Patient (PHI)
    ds.PatientName = dicom_name(identity)
    ds.PatientID = identity.mrn
    ds.PatientBirthDate = _da(identity.birth_date)
    ds.PatientSex = identity.sex
    age = identity.visit_date.year - identity.birth_date.year - (
        (identity.visit_date.month, identity.visit_date.day) < (identity.birth_date.month, identity.birth_date.day))
    ds.PatientAge = f"{min(age, 999):03d}Y"
    # Study / series
    ds.StudyInstanceUID = _uid(uid_seed, "study")
    ds.SeriesInstanceUID = _uid(uid_seed, "series")
    ds.FrameOfReferenceUID = _uid(uid_seed, "frame")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = _da(identity.visit_date)
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "101500"
    ds.AccessionNumber = identity.accession
    ds.ReferringPhysicianName = physician_name(identity)
    ds.StudyID = "1"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = description
    ds.SeriesNumber = 2
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    # Equipment
    ds.Manufacturer = scanner.manufacturer
    ds.ManufacturerModelName = scanner.model
    ds.InstitutionName = identity.institution
    # CT image / image plane / pixel
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1
    ds.KVP = f"{scanner.kvp:g}"
    ds.SliceThickness = f"{ct.slice_spacing_mm:g}"
    ds.SpacingBetweenSlices = f"{ct.slice_spacing_mm:g}"
    ds.ConvolutionKernel = "SYNTH-B" if scanner.kernel_sigma_mm >= 0.75 else "SYNTH-S"
    ds.PixelSpacing = [f"{ct.pixel_spacing_mm:g}", f"{ct.pixel_spacing_mm:g}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(ct.hu.shape[1]), int(ct.hu.shape[2])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1  # signed: stored value = HU, so the loader's rescale is exact
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    ds.SOPClassUID = CTImageStorage
    ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def write_ct_series(out_dir: Path, ct: RenderedCT, scanner: ScannerProfile, identity: PatientIdentity, *,
                    uid_seed: str, series_description: str = "CHEST CT NODULE") -> list[Path]:
    """Write ``ct`` into ``out_dir`` (one file per slice) in the scanner's transfer syntax; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    syntax = _SYNTAX[scanner.transfer_syntax]
    base = _series_header(ct, scanner, identity, uid_seed, series_description)
    x0, y0, z0 = ct.origin_lps
    paths: list[Path] = []
    for k in range(ct.hu.shape[0]):
        ds = Dataset()
        ds.update(base)
        sop = _uid(uid_seed, "slice", k)
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = k + 1
        z = z0 + k * ct.slice_spacing_mm
        ds.ImagePositionPatient = [f"{x0:.4f}", f"{y0:.4f}", f"{z:.4f}"]
        ds.SliceLocation = f"{z:.4f}"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        pixels = np.ascontiguousarray(ct.hu[k], dtype=np.int16)
        if syntax == ExplicitVRLittleEndian:
            ds.PixelData = pixels.tobytes()
            ds["PixelData"].VR = "OW"
        elif syntax == JPEGLSLossless:
            ds.compress(syntax, pixels, encoding_plugin="pyjpegls")
        else:
            ds.compress(syntax, pixels)
        name = hashlib.sha1(sop.encode()).hexdigest()[:12] + ".dcm"
        tmp = out_dir / f".{name}.tmp"
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, out_dir / name)
        paths.append(out_dir / name)
    return paths
