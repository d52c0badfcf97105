"""The report as a FHIR R4 (R4B models) Bundle, for an EHR or a research repository to ingest.

The Bundle is of type ``collection``, not ``document``: a document Bundle must open with a ``Composition`` and
is then an attested, immutable clinical document. The workbench's output is decision support, not a signed
report, and the receiving system decides whether and how to compose it into one; a collection carries the same
resources without claiming that status.

It holds a ``DiagnosticReport`` (LOINC 24627-2 "CT Chest"), the ``Observation``s it reports (malignancy
probability with its interval, nodule diameter, conformal prediction set and refer flag), the
``Patient`` they are about, the ``Device`` (the model) that produced them, a ``Provenance`` naming that device
as author, and an ``ImagingStudy`` for the source CT when there is one. Every id is a uuid5 of the case id and
the report time, so the same content gives the same Bundle, byte for byte. The report, its Observations and
the Bundle carry the ``AIAST`` ("Artificial Intelligence asserted") security label of HL7's AI transparency
guidance. Key images are left to the PDF / HTML / SR renderers: a Bundle that embeds PNGs is heavy for an EHR
interface, and nothing in it needs them to be read.

Export mode puts nothing identifying in the Bundle: the Patient has only a Bundle-local id and the case id
(a project pseudonym), the ImagingStudy has the remapped UIDs and no date, accession number or referrer.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device, DeviceDeviceName, DeviceProperty, DeviceVersion
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.imagingstudy import ImagingStudy, ImagingStudySeries, ImagingStudySeriesInstance
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.provenance import Provenance, ProvenanceAgent
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

from workbench.atomic import write_text
from workbench.errors import WorkbenchError
from workbench.report.content import ReportContent
from workbench.report.wording import uncertainty_line
from workbench.runtime.nodule_card import LOBE_SNOMED
from workbench.runtime.privacy import NOT_PRIVATE

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
# No LOINC or SNOMED CT code says "AI-estimated malignancy probability of a pulmonary nodule" (nor "conformal
# prediction set"), so those findings are coded in a local CodeSystem; diameter and lung sites use SNOMED CT.
FINDINGS = "https://nodule-workbench.example/fhir/CodeSystem/findings"
CASE_ID_SYSTEM = "https://nodule-workbench.example/fhir/case-id"
AI_ASSERTED = Coding(system="http://terminology.hl7.org/CodeSystem/v3-ObservationValue", code="AIAST",
                     display="Artificial Intelligence asserted")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://nodule-workbench.example/fhir")
_GENDER = {"M": "male", "F": "female", "O": "other"}
_LUNG = {"right lung": ("3341006", "Right lung structure"), "left lung": ("44029006", "Left lung structure")}


def _uuid(content: ReportContent, role: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{content.case_id}|{content.created}|{role}"))


def _ref(resource_id: str) -> Reference:
    return Reference(reference=f"urn:uuid:{resource_id}")


def _instant(created: str) -> datetime:
    """``created`` as a FHIR instant: a naive time is taken as UTC (an instant must carry its zone)."""
    try:
        t = datetime.fromisoformat(created)
    except ValueError as e:
        raise WorkbenchError(f"report time {created!r} is not ISO 8601") from e
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _cc(system: str, code: str, display: str, text: str | None = None) -> CodeableConcept:
    return CodeableConcept(coding=[Coding(system=system, code=code, display=display)], text=text)


def _local(code: str, display: str) -> CodeableConcept:
    return _cc(FINDINGS, code, display, display)


def _percent(fraction: float) -> Quantity:
    """A probability as UCUM percent, one decimal: what a clinician reads ("37.0 %"), not a bare fraction."""
    return Quantity(value=_decimal(fraction * 100, 1), unit="%", system=UCUM, code="%")


def _decimal(x: float, places: int | None = None) -> Decimal:
    """The value as a FHIR decimal from its shortest repr (0.99, not 0.98999999999999999111...)."""
    return Decimal(repr(float(round(x, places) if places is not None else x)))


def _meta() -> Meta:
    return Meta(security=[AI_ASSERTED])


def _date(yyyymmdd: str) -> date | None:
    """A DICOM DA value as a date; None when empty or malformed (a report is not refused for a bad date)."""
    try:
        return datetime.strptime(yyyymmdd, "%Y%m%d").date() if len(yyyymmdd) == 8 else None
    except ValueError:
        return None


def _patient(content: ReportContent, pid: str) -> Patient:
    ids = [Identifier(system=CASE_ID_SYSTEM, value=content.case_id)]
    if content.mode == "export":  # only the project's pseudonym: no name, birth date, sex or hospital id
        return Patient(id=pid, identifier=ids)
    p = content.patient
    if p.patient_id:
        ids.append(Identifier(type=_cc(V2_0203, "MR", "Medical record number"), value=p.patient_id))
    name = None
    if p.name:
        f, g, m, pre, suf = (p.name.split("^") + [""] * 5)[:5]  # DICOM PN: family^given^middle^prefix^suffix
        name = [HumanName(text=" ".join(x for x in (g, f) if x), family=f or None,
                          given=[x for x in (g, m) if x] or None, prefix=[pre] if pre else None,
                          suffix=[suf] if suf else None)]
    gender = _GENDER.get(p.sex.upper(), "unknown") if p.sex else None
    return Patient(id=pid, identifier=ids, name=name, birthDate=_date(p.birth_date), gender=gender)


def _device(content: ReportContent, did: str) -> Device:
    m = content.model
    how = "federated" if m.federated else "centralised"
    lines = [f"Training sites: {', '.join(m.training_sites) or 'none recorded'} ({how} training)."]
    props = []
    if m.epsilon:
        per_node = ", ".join(f"{node} {eps:g}" for node, eps in m.epsilon.items())
        delta = f"; delta {m.delta:g}" if m.delta is not None else ""
        void = "" if m.dp_secure else f" {NOT_PRIVATE[0].upper()}{NOT_PRIVATE[1:]}: these epsilons guarantee nothing."
        lines.append(f"Differential privacy, lifetime epsilon per node: {per_node}{delta}.{void}")
        for node, eps in m.epsilon.items():
            label = f"DP epsilon spent, node {node}" + ("" if m.dp_secure else f" ({NOT_PRIVATE})")
            kind = _cc(FINDINGS, "dp-epsilon", "DP epsilon spent", label)
            eps_q = Quantity(value=_decimal(eps), unit="1", system=UCUM, code="1")
            props.append(DeviceProperty(type=kind, valueQuantity=[eps_q]))
    return Device(id=did, status="active", manufacturer=m.manufacturer,
                  deviceName=[DeviceDeviceName(name=m.name, type="model-name")],
                  version=[DeviceVersion(value=m.version)],
                  type=CodeableConcept(text="AI/ML decision-support model"),
                  property=props or None, note=[Annotation(text=" ".join(lines))])


def _imaging_study(content: ReportContent, sid: str, subject: Reference) -> ImagingStudy:
    s = content.source
    assert s is not None
    clinical = content.mode == "clinical"
    ids = [Identifier(system="urn:dicom:uid", value=f"urn:oid:{s.study_uid}")]
    if clinical and content.patient.accession_number:
        acsn = _cc(V2_0203, "ACSN", "Accession ID")
        ids.append(Identifier(type=acsn, value=content.patient.accession_number))
    referrer = None
    if clinical and s.referring_physician:
        family, given = (s.referring_physician.split("^") + [""])[:2]
        referrer = Reference(display=" ".join(x for x in (given, family) if x))
    sop_class = Coding(system="urn:ietf:rfc:3986", code=f"urn:oid:{s.sop_class_uid}")
    instances = [ImagingStudySeriesInstance(uid=u, sopClass=sop_class) for u in s.sop_instance_uids]
    series = ImagingStudySeries(uid=s.series_uid, modality=Coding(system=DCM, code="CT"),
                                numberOfInstances=len(instances), instance=instances or None)
    # the study date only (clinical mode): DICOM gives a local time with no zone, and a FHIR time needs one; a
    # FHIR dateTime may be a bare date, though the models type it datetime
    return ImagingStudy(id=sid, status="available", subject=subject, identifier=ids, referrer=referrer,
                        started=_date(s.study_date) if clinical else None,  # type: ignore[arg-type]
                        numberOfSeries=1, numberOfInstances=len(instances), series=[series],
                        note=[Annotation(text=f"Frame of reference urn:oid:{s.frame_of_reference_uid}")])


def _observations(content: ReportContent, common: dict[str, Any]) -> list[tuple[str, Observation]]:
    """(id, Observation) for the probability, the measured size and Lung-RADS category (when measured) and the
    prediction set."""
    common = {**common, "category": [_cc(OBSERVATION_CATEGORY, "imaging", "Imaging")]}
    out = []
    # (1) the probability in %, its interval as components (not referenceRange: a normal range), each
    # bound coded and in the value's unit and rounding (UCUM %, one decimal), so a reader compares like with like
    notes = []
    comps: list[ObservationComponent] | None = None
    if content.interval is not None:
        lo, hi = content.interval
        comps = []
        for bound, v in (("lower", lo), ("upper", hi)):
            code = _local(f"malignancy-probability-{bound}", f"Malignancy probability, {bound} bound of its interval")
            comps.append(ObservationComponent(code=code, valueQuantity=_percent(v)))
        method = content.interval_method or "an unnamed method"
        notes.append(f"Interval [{_percent(lo).value} %, {_percent(hi).value} %] by {method}.")
    if content.modality_contributions:
        gate = ", ".join(f"{k} {v:.2f}" for k, v in content.modality_contributions.items())
        notes.append(f"Modality gate weights: {gate}.")
    notes += content.notes
    oid = _uuid(content, "observation/malignancy-probability")
    code = _local("malignancy-probability", "Malignancy probability of pulmonary nodule")
    value = _percent(content.probability)
    out.append((oid, Observation(id=oid, code=code, valueQuantity=value, component=comps,
                                 note=[Annotation(text=n) for n in notes] or None, **common)))
    # (2) the size measured from the CT, coded in SNOMED CT as DICOM SR TID 1500 codes it, each Observation with
    # the measured lobe (SNOMED CT) as its body site, else the lung
    lobe = LOBE_SNOMED.get(content.lobe or "")
    if lobe:
        body = _cc(SNOMED, *lobe, lobe[1])
    else:
        site = _LUNG.get(content.finding_site.lower())
        body = _cc(SNOMED, *site, content.finding_site) if site else CodeableConcept(text=content.finding_site)
    for role, sct, display, text, v, unit in (
            ("diameter", "81827009", "Diameter", "Nodule mean diameter (measured from the CT)", content.diameter_mm,
             "mm"),
            ("long-axis", "103339001", "Long axis", "Nodule long axis (measured from the CT)", content.long_axis_mm,
             "mm"),
            ("short-axis", "103340004", "Short axis", "Nodule short axis (measured from the CT)",
             content.short_axis_mm, "mm"),
            ("volume", "118565006", "Volume", "Nodule volume (measured from the CT)", content.volume_mm3, "mm3")):
        if v is None:
            continue
        oid = _uuid(content, f"observation/{role}")
        q = Quantity(value=_decimal(v, 1), unit=unit, system=UCUM, code=unit)
        out.append((oid, Observation(id=oid, code=_cc(SNOMED, sct, display, text), bodySite=body, valueQuantity=q,
                                     **common)))
    if content.lung_rads:
        oid = _uuid(content, "observation/lung-rads")
        code = _local("lung-rads-category", "Lung-RADS v2022 assessment category")
        value = _local(f"lung-rads-{content.lung_rads}", f"Lung-RADS {content.lung_rads}")
        note = [Annotation(text=t) for t in (content.lung_rads_management, content.lung_rads_reason) if t]
        out.append((oid, Observation(id=oid, code=code, bodySite=body, valueCodeableConcept=value, note=note or None,
                                     **common)))
    if content.brock_risk is not None:
        oid = _uuid(content, "observation/brock")
        code = _local("brock-risk", "Brock (PanCan) probability of malignancy")
        q = Quantity(value=_decimal(100 * content.brock_risk, 1), unit="%", system=UCUM, code="%")
        facts = [f"{k}: {v} ({content.brock_inputs.get('sources', {}).get(k, '')})"
                 for k, v in content.brock_inputs.items() if k != "sources"]
        note = [Annotation(text=t) for t in (content.brock_citation, *facts) if t]
        out.append((oid, Observation(id=oid, code=code, bodySite=body, valueQuantity=q, note=note or None,
                                     **common)))
    # (3) the conformal prediction set (one component per member), its coverage target and the refer flag
    member = _local("prediction-set-member", "Conformal prediction set member")
    comps = [ObservationComponent(code=member, valueCodeableConcept=_local(label, label))
             for label in content.prediction_set]
    if content.coverage_target is not None:
        comps.append(ObservationComponent(code=_local("coverage-target", "Conformal coverage target"),
                                          valueQuantity=_percent(content.coverage_target)))
    comps.append(ObservationComponent(code=_local("refer", "Refer for specialist review"),
                                      valueBoolean=content.refer))
    labels = ", ".join(content.prediction_set)
    notes = [f"Prediction set: {{{labels}}}{'' if labels else ' (empty)'}."]
    notes += [f"Refer: {r}" for r in content.refer_reasons]
    oid = _uuid(content, "observation/prediction-set")
    code = _local("conformal-prediction-set", "Conformal prediction set and referral")
    out.append((oid, Observation(id=oid, code=code, component=comps, note=[Annotation(text=n) for n in notes],
                                 **common)))
    return out


def fhir_bundle(content: ReportContent) -> dict[str, Any]:
    """The Bundle as a JSON-able dict (``exclude_none``), validated by the R4B models on the way."""
    if content.mode not in ("export", "clinical"):
        raise WorkbenchError(f"case {content.case_id}: report mode {content.mode!r}, not export or clinical")
    when = _instant(content.created)
    pid, did = _uuid(content, "patient"), _uuid(content, "device")
    rid, prov_id = _uuid(content, "diagnostic-report"), _uuid(content, "provenance")
    bid = _uuid(content, "bundle")
    subject, device = _ref(pid), _ref(did)
    common = dict(status="final", subject=subject, device=device, effectiveDateTime=when, meta=_meta())
    observations = _observations(content, common)
    resources: list[tuple[str, Any]] = [(pid, _patient(content, pid)), (did, _device(content, did))]
    study = None
    if content.source is not None:
        sid = _uuid(content, "imaging-study")
        resources.append((sid, _imaging_study(content, sid, subject)))
        study = [_ref(sid)]
    code = _cc(LOINC, "24627-2", "CT Chest", "CT chest: pulmonary nodule malignancy risk (AI)")
    radiology = [_cc(V2_0074, "RAD", "Radiology")]
    report = DiagnosticReport(id=rid, meta=_meta(), status="final", category=radiology, code=code,
                              subject=subject, effectiveDateTime=when, issued=when, imagingStudy=study,
                              result=[_ref(o) for o, _ in observations],
                              conclusion=_conclusion(content))
    author = ProvenanceAgent(type=_cc(PARTICIPANT_TYPE, "author", "Author"), who=device)
    provenance = Provenance(id=prov_id, recorded=when, agent=[author],
                            target=[_ref(x) for x in [rid] + [o for o, _ in observations]])
    resources += [(rid, report), *observations, (prov_id, provenance)]
    bundle = Bundle(id=bid, meta=_meta(), type="collection", timestamp=when,
                    identifier=Identifier(system="urn:ietf:rfc:3986", value=f"urn:uuid:{bid}"),
                    entry=[BundleEntry(fullUrl=f"urn:uuid:{i}", resource=r) for i, r in resources])
    return bundle.model_dump(mode="json", exclude_none=True)


def _conclusion(content: ReportContent) -> str:
    """The finding, the model-uncertain line, then the guideline recommendation marked as decision support."""
    parts = [f"{content.finding}."]
    if (line := uncertainty_line(content)) is not None:
        parts.append(f"{line}.")
    if content.recommendation:
        parts.append(f"Decision support, not a clinical order: {content.recommendation}")
    if content.model_brock_disagreement:
        parts.append(content.model_brock_disagreement)
    parts.append(content.disclaimer)
    return " ".join(parts)


def write_fhir(content: ReportContent, path: str | Path) -> Path:
    """The Bundle as indented JSON at ``path``, written atomically (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(fhir_bundle(content), indent=2) + "\n")
    return path


__all__ = ["AI_ASSERTED", "fhir_bundle", "write_fhir"]
