"""The report as a DICOM Comprehensive 3D SR (TID 1500 measurement report), built with highdicom.

One measurement group for the nodule: tracking identifier, finding type Nodule (SCT 27925004), its site (lung
with laterality: the measured lobe's SNOMED CT code when there is one), the algorithm's identification (name,
version), and the measurements: long and short axis, mean diameter (SCT 103339001, 103340004, 81827009; UCUM mm)
and volume (SCT 118565006, UCUM mm3) when measured, the Lung-RADS v2022 category as a qualitative evaluation
(private scheme 99NODWB), and the probability of cancer (DCM 111047, UCUM %), coded, with its
interval as the measurement's uncertainty range (TID 310: SCT 371885007 "-, range of lower measurement
uncertainty" and 371886008 "+, range of upper ...", in percentage points of the same rounded value, so a reader
gets the interval's printed bounds as value - lower and value + upper, and the risk lies inside them). With a
nodule centre it is a volumetric group (TID 1411): the nodule as an ellipsoid (or point) in the series' frame of
reference, naming the source series (UIDREF "Source series for segmentation"); without one, a TID 1501 group
whose source image is the middle slice. The SR's evidence lists every instance of the source series (Current
Requested Procedure Evidence). The SR lives in the source study
(same Study Instance UID), in a new series.

The evidence is rebuilt from ``SourceSeries`` and ``Patient`` rather than read from the images, so export mode
(de-identified, UIDs remapped) and clinical mode share one code path: highdicom copies the patient and study
attributes from the first evidence dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from workbench.atomic import atomic_write
from workbench.errors import WorkbenchError
from workbench.report.content import ReportContent
from workbench.report.source import remap_uid
from workbench.runtime.nodule_card import LOBE_SNOMED

RIGHT = ("24028007", "SCT", "Right")
LEFT = ("7771000", "SCT", "Left")
# Lung-RADS has no code in DICOM's or SNOMED's tables that highdicom ships: a private scheme ("99" prefix, PS3.16
# 8.1), with the category's words as the code meaning a reader sees
LUNG_RADS_SCHEME = "99NODWB"


def _evidence(content: ReportContent) -> list[Dataset]:
    src = content.source
    assert src is not None
    pseudonym = content.case_id if content.mode == "export" else ""
    out = []
    for uid in src.sop_instance_uids:
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = src.sop_class_uid, uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = src.study_uid, src.series_uid
        ds.Modality = "CT"
        ds.PatientName = f"{pseudonym}^" if pseudonym else content.patient.name  # a one-component name
        ds.PatientID = pseudonym or content.patient.patient_id
        ds.PatientBirthDate = "" if pseudonym else content.patient.birth_date
        ds.PatientSex = "" if pseudonym else content.patient.sex
        ds.AccessionNumber = "" if pseudonym else content.patient.accession_number
        ds.StudyDate, ds.StudyTime = ("", "") if pseudonym else (src.study_date, src.study_time)
        ds.StudyID = "" if pseudonym else src.study_id
        ds.ReferringPhysicianName = "" if pseudonym else src.referring_physician
        out.append(ds)
    return out


def build_sr(content: ReportContent) -> Dataset:
    """The Comprehensive 3D SR dataset (not yet written)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    if content.source is None:
        raise WorkbenchError(f"case {content.case_id}: no CT series, so no DICOM SR (it must reference its source)")
    src = content.source
    algorithm = hd.sr.AlgorithmIdentification(name=content.model.name, version=content.model.version)
    laterality = Code(*(RIGHT if content.finding_site.startswith("right") else LEFT))
    lobe = LOBE_SNOMED.get(content.lobe or "")
    site = hd.sr.FindingSite(anatomic_location=Code(lobe[0], "SCT", lobe[1]) if lobe else codes.SCT.Lung,
                             laterality=laterality)
    risk = round(100 * content.probability, 1)
    measurements = [hd.sr.Measurement(name=codes.DCM.ProbabilityOfCancer, value=risk, unit=codes.UCUM.Percent,
                                      algorithm_id=algorithm, properties=_interval_properties(content, risk))]
    sizes = [(codes.SCT.LongAxis, content.long_axis_mm, codes.UCUM.Millimeter),
             (codes.SCT.ShortAxis, content.short_axis_mm, codes.UCUM.Millimeter),
             (codes.SCT.Diameter, content.diameter_mm, codes.UCUM.Millimeter),
             (codes.SCT.Volume, content.volume_mm3, codes.UCUM.CubicMillimeter)]
    measurements[:0] = [hd.sr.Measurement(name=name, value=round(float(v), 1), unit=unit, algorithm_id=algorithm,
                                          finding_sites=[site]) for name, v, unit in sizes if v is not None]
    evaluations = None
    if content.lung_rads:
        evaluations = [hd.sr.QualitativeEvaluation(
            name=hd.sr.CodedConcept("LRCAT", LUNG_RADS_SCHEME, "Lung-RADS v2022 category"),
            value=hd.sr.CodedConcept(f"LR{content.lung_rads}", LUNG_RADS_SCHEME,
                                     f"Lung-RADS {content.lung_rads}"))]
    key = content.case_id if content.mode == "export" else f"{src.study_uid}/{content.case_id}"
    tracking = hd.sr.TrackingIdentifier(uid=remap_uid(key, b"tracking"), identifier="nodule 1")
    group: Any
    if content.nodule_center_lps_mm is not None and src.frame_of_reference_uid:
        # TID 1411: the nodule as a 3D region in the series' frame of reference (an ellipsoid of the measured
        # diameter, or a point), which names its source series (UIDREF "Source series for segmentation")
        c = np.asarray(content.nodule_center_lps_mm, dtype=float)
        if content.diameter_mm is not None:
            r = content.diameter_mm / 2.0
            data = np.array([c + d for axis in np.eye(3) * r for d in (-axis, axis)])
            graphic = hd.sr.GraphicTypeValues3D.ELLIPSOID
        else:
            data, graphic = c[None], hd.sr.GraphicTypeValues3D.POINT
        surface = hd.sr.VolumeSurface(graphic_type=graphic, graphic_data=data, frame_of_reference_uid=src.frame_of_reference_uid,
                                      source_series=hd.sr.SourceSeriesForSegmentation(src.series_uid))
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_volume_surface=surface, finding_type=codes.SCT.Nodule,
            finding_sites=[site], algorithm_id=algorithm, measurements=measurements,
            qualitative_evaluations=evaluations)
    else:
        nearest = src.sop_instance_uids[len(src.sop_instance_uids) // 2]
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, finding_type=codes.SCT.Nodule, finding_sites=[site], algorithm_id=algorithm,
            measurements=measurements, qualitative_evaluations=evaluations,
            source_images=[hd.sr.SourceImageForMeasurementGroup(src.sop_class_uid, nearest)])
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=remap_uid(f"{content.model.name}/{content.model.version}", b"device"), name=content.model.name,
            manufacturer_name=content.model.manufacturer, model_name=content.model.version))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=Code("24627-2", "LN", "CT Chest"), imaging_measurements=[group])
    seed = f"{src.study_uid}/{content.case_id}/{content.created}"
    return hd.sr.Comprehensive3DSR(
        evidence=_evidence(content), content=report, series_instance_uid=remap_uid(seed, b"sr-series"), series_number=901,
        sop_instance_uid=remap_uid(seed, b"sr-instance"), instance_number=1, manufacturer=content.model.manufacturer,
        is_complete=True, is_final=False, is_verified=False)


def _interval_properties(content: ReportContent, risk: float) -> Any:
    """TID 310 measurement properties holding the interval as the risk's uncertainty range, in percentage points
    (UCUM %, the measurement's unit, as TID 310 asks; highdicom's own arguments for these rows carry no unit), or
    None without an interval. Offsets are taken between the rounded numbers, so value - lower and value + upper
    are the interval's bounds rounded as the value is."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if content.interval is None:
        return None
    lo, hi = (round(100 * v, 1) for v in content.interval)
    props = hd.sr.MeasurementProperties()
    for code, meaning, offset in (("371885007", "-, range of lower measurement uncertainty", risk - lo),
                                  ("371886008", "+, range of upper measurement uncertainty", hi - risk)):
        props.append(hd.sr.NumContentItem(
            name=hd.sr.CodedConcept(value=code, meaning=meaning, scheme_designator="SCT"),
            value=round(max(offset, 0.0), 1), unit=codes.UCUM.Percent,
            relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES))
    return props


def write_sr(content: ReportContent, path: str | Path) -> Path:
    """Write the SR (DICOM file with meta header) atomically: a reader never sees half of it."""
    path = Path(path)
    ds = build_sr(content)
    with atomic_write(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


__all__ = ["build_sr", "write_sr"]
