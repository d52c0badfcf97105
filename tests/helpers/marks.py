"""A radiologist's mark as a minimal Comprehensive 3D SR: one spatial-coordinate content item under a container,
referencing the CT's patient, study and frame of reference (what a viewer stores when a nodule is clicked)."""

from __future__ import annotations

from pathlib import Path

import pydicom


def write_mark_sr(ct: pydicom.Dataset, item: pydicom.Dataset, path: Path) -> Path:
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.34", pydicom.uid.generate_uid()
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = ct.StudyInstanceUID, ct.FrameOfReferenceUID
    ds.SeriesInstanceUID, ds.Modality, ds.ValueType = pydicom.uid.generate_uid(), "SR", "CONTAINER"
    ds.ContentSequence = [item]
    for kw in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate",
               "StudyTime", "StudyID", "ReferringPhysicianName"):  # a viewer's SR carries the study's patient
        if kw in ct:
            setattr(ds, kw, ct.data_element(kw).value)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def point_item(lps: tuple[float, float, float] | list[float]) -> pydicom.Dataset:
    """A SCOORD3D POINT at ``lps`` (mm)."""
    item = pydicom.Dataset()
    item.ValueType, item.GraphicType, item.GraphicData = "SCOORD3D", "POINT", [float(v) for v in lps]
    return item
