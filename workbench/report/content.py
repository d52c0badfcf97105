"""What a diagnostic report says, gathered once and rendered four ways (PDF, HTML, DICOM SR, FHIR).

``ReportContent`` is plain data: every renderer reads only this, so the four formats cannot disagree. Two
modes (docs/architecture.md §8): ``export`` (default) carries no identifier of the patient and the source series' UIDs remapped
(``SourceSeries`` holds the remapped ones; the same mapping is applied everywhere, so references still resolve);
``clinical`` keeps the identifiers and original UIDs, for the hospital's own PACS and EHR.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from workbench.runtime.nodule_card import LOBE_WORDS, NODULE_TYPE_WORDS

DISCLAIMER = ("Decision support, not a diagnosis. Computed by a research model trained on synthetic data; "
              "not validated for clinical use.")


@dataclass
class KeyImage:
    title: str
    png: bytes  # a PNG file's bytes (the CT slices with the attribution overlay, the gate bar, ...)


@dataclass
class Patient:
    """Identifiers: filled in ``clinical`` mode only; in ``export`` mode every field is empty."""

    patient_id: str = ""
    name: str = ""  # DICOM PN form, "Family^Given"
    birth_date: str = ""  # YYYYMMDD
    sex: str = ""  # M / F / O / ""
    accession_number: str = ""


@dataclass
class SourceSeries:
    """The CT series the finding was read from, as the SR references it (UIDs remapped in export mode)."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: list[str]
    study_date: str = ""  # YYYYMMDD; empty in export mode
    study_time: str = ""
    study_id: str = ""
    referring_physician: str = ""  # empty in export mode
    manufacturer: str = ""


@dataclass
class ModelProvenance:
    name: str  # "nodule-workbench fused CT + note model"
    version: str  # content digest of the weights
    training_sites: list[str]
    federated: bool
    epsilon: dict[str, float] = field(default_factory=dict)  # node -> lifetime epsilon spent (empty: no DP)
    delta: float | None = None
    manufacturer: str = "nodule-workbench (research software)"
    # False when any node's DP draws and noise were seeded (the test mode): its epsilon then guarantees nothing,
    # and every renderer says "not private: seeded randomness" next to it
    dp_secure: bool = True


@dataclass
class ReportContent:
    case_id: str
    mode: str  # "export" or "clinical"
    created: str  # ISO 8601 date-time of the report
    probability: float  # calibrated malignancy probability
    interval: tuple[float, float] | None  # around the risk (interval_method says how)
    interval_method: str | None
    prediction_set: list[str]  # the 90% conformal set: "benign" / "malignant"
    coverage_target: float | None
    refer: bool
    refer_reasons: list[str]
    diameter_mm: float | None  # the measured mean diameter (Lung-RADS: mean of long and short axis); None: not measured
    finding_site: str  # "right lung" / "left lung" (from the nodule's position)
    nodule_center_lps_mm: tuple[float, float, float] | None
    modality_contributions: dict[str, float]  # gate weight per modality (0 = absent)
    attention_rollout: dict[str, float]
    top_phrases: list[tuple[str, float]]  # words of the de-identified note and their attribution
    key_images: list[KeyImage]
    model: ModelProvenance
    patient: Patient
    source: SourceSeries | None  # None when the case has no CT
    notes: list[str] = field(default_factory=list)  # what was not used or not explained, and why
    disclaimer: str = DISCLAIMER
    # measured from the CT at the marked centre (workbench.runtime.measure); None where not measured
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    mean_diameter_mm: float | None = None
    volume_mm3: float | None = None
    solid_component_mm: float | None = None  # part-solid nodules only
    nodule_type: str | None = None  # solid, part_solid, non_solid (ground-glass)
    lobe: str | None = None  # RUL, RML, RLL, LUL, LLL
    measurement_caveats: list[str] = field(default_factory=list)  # why a reader should check the size by eye
    lung_rads: str | None = None  # Lung-RADS v2022 category at baseline, from the measurement
    lung_rads_management: str | None = None
    lung_rads_reason: str | None = None
    lung_rads_status: str | None = None  # baseline, stable or growing (from the note's prior CT)
    spiculated: bool | None = None  # measured from the CT margin (workbench.runtime.measure_margin)
    emphysema: bool | None = None  # measured from the CT (LAA-950)
    nodule_count: int | None = None  # the marked nodule only (others not searched)
    # the guidelines applied to the measured nodule and the note's facts (workbench.runtime.guideline_card)
    recommendation: str | None = None  # the lead guideline's recommendation, named ("Fleischner 2017: ...")
    recommendation_citation: str | None = None
    fleischner: str | None = None
    fleischner_applies: bool | None = None
    fleischner_citation: str | None = None
    fleischner_risk: str | None = None
    bts: str | None = None
    bts_citation: str | None = None
    brock_risk: float | None = None  # Brock (PanCan) probability from the measured nodule and the note's facts
    brock_inputs: dict[str, Any] = field(default_factory=dict)
    brock_citation: str | None = None
    model_brock_disagreement: str | None = None  # one plain line when the model and Brock differ by > 10 points
    guideline_assumptions: list[str] = field(default_factory=list)
    note_facts: dict[str, Any] = field(default_factory=dict)  # the facts read from the de-identified note
    uncertain_line: str | None = None  # "Model uncertain: needs a radiologist's read (...)" when refer is set

    @property
    def finding(self) -> str:
        """One line a reader can quote."""
        d = f"{self.diameter_mm:.1f} mm " if self.diameter_mm is not None else ""
        kind = f"{NODULE_TYPE_WORDS.get(self.nodule_type, self.nodule_type)} " if self.nodule_type else ""
        site = LOBE_WORDS.get(self.lobe, self.finding_site) if self.lobe else self.finding_site
        return f"Pulmonary nodule, {d}{kind}{site}: estimated malignancy risk {self.probability:.0%}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (images as their titles and sizes)."""
        d = asdict(self)
        d["key_images"] = [{"title": k.title, "bytes": len(k.png)} for k in self.key_images]
        return d


__all__ = ["DISCLAIMER", "KeyImage", "ModelProvenance", "Patient", "ReportContent",
           "SourceSeries"]
