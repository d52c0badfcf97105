"""What the human-readable reports say, worded once: the PDF and the HTML page print the same rows and lines.

Every row is built from ``ReportContent`` only. Export mode shows no identifier of the patient even when
``Patient`` happens to carry some: the wording does not trust its input to have been cleaned, and an unknown mode
is refused rather than guessed (a typo must not show identifiers).
"""

from __future__ import annotations

from workbench.errors import WorkbenchError
from workbench.report.content import ReportContent
from workbench.runtime.nodule_card import LOBE_WORDS, type_words
from workbench.runtime.privacy import NOT_PRIVATE

TITLE = "Pulmonary nodule malignancy risk — decision-support report"
POS, NEG, ZERO = "#b2182b", "#2166ac", "#555555"  # attribution colours: red raised the risk, blue lowered it


def clinical(content: ReportContent) -> bool:
    """True for clinical mode; an unknown mode is refused rather than guessed (a typo must not show identifiers)."""
    if content.mode not in ("export", "clinical"):
        raise WorkbenchError(f"case {content.case_id}: report mode {content.mode!r}: expected 'export' or 'clinical'")
    return content.mode == "clinical"


def mode_line(content: ReportContent) -> str:
    return "clinical" if clinical(content) else "export: de-identified"


def pct(p: float) -> str:
    return f"{p:.0%}"


def person_name(pn: str) -> str:
    """DICOM PN "Family^Given^Middle^Prefix^Suffix" (alphabetic group) as a reader writes it: "Given Family"."""
    parts = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (p.strip() for p in parts)
    return " ".join(p for p in (prefix, given, middle, family, suffix) if p)


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


_SEX = {"M": "male", "F": "female", "O": "other"}


def patient_rows(content: ReportContent) -> list[tuple[str, str]]:
    if not clinical(content):
        return [("Case", content.case_id), ("Patient", "de-identified export")]
    p = content.patient
    return [("Case", content.case_id), ("Patient ID", p.patient_id or "—"), ("Name", person_name(p.name) or "—"),
            ("Birth date", _date(p.birth_date) or "—"), ("Sex", _SEX.get(p.sex, p.sex) or "—"),
            ("Accession number", p.accession_number or "—")]


def finding_rows(content: ReportContent) -> list[tuple[str, str]]:
    """The nodule as measured from the CT (size, type, solid part, lobe, Lung-RADS), then where it was marked."""
    c = content
    if c.long_axis_mm is not None and c.short_axis_mm is not None:
        size = (f"{c.long_axis_mm:.1f} x {c.short_axis_mm:.1f} mm, mean diameter {c.mean_diameter_mm:.1f} mm"
                + (f", volume {c.volume_mm3:,.0f} mm3" if c.volume_mm3 is not None else ""))
    elif c.diameter_mm is not None:
        size = f"{c.diameter_mm:.1f} mm"
    else:
        size = "not measured (see notes)"
    rows = [("Size (measured)", size)]
    if c.nodule_type:
        rows.append(("Type", type_words(c.nodule_type, c.solid_component_mm)))
    rows.append(("Site", LOBE_WORDS.get(c.lobe, c.lobe) if c.lobe else (c.finding_site or "—")))
    if c.spiculated is not None:
        rows.append(("Margin", "spiculated (measured)" if c.spiculated else "no spiculation measured"))
    if c.emphysema is not None:
        rows.append(("Emphysema", "present on this CT (measured)" if c.emphysema else "none measured on this CT"))
    if c.nodule_count is not None:
        rows.append(("Count", f"{c.nodule_count} (the marked nodule; the scan was not searched for others)"))
    if c.lung_rads:
        rows.append(("Lung-RADS v2022", f"category {c.lung_rads}: {c.lung_rads_management}"))
    if c.measurement_caveats:
        rows.append(("Check the size by eye", "; ".join(c.measurement_caveats)))
    if content.nodule_center_lps_mm is not None:
        rows.append(("Centre (LPS, mm)", ", ".join(f"{v:.1f}" for v in content.nodule_center_lps_mm)))
    return rows


def guideline_rows(content: ReportContent) -> list[tuple[str, str]]:
    """The guidelines applied to the measured nodule and the note's facts, each naming its source (decision
    support: the reader decides)."""
    c = content
    rows = []
    if c.recommendation:
        rows.append(("Recommendation (decision support)", c.recommendation))
    if c.fleischner and not (c.recommendation or "").startswith("Fleischner"):
        rows.append(("Fleischner 2017", c.fleischner))
    if c.fleischner_risk:
        rows.append(("Fleischner risk group", c.fleischner_risk))
    if c.bts and not (c.recommendation or "").startswith("BTS"):
        rows.append(("BTS 2015", c.bts))
    if c.brock_risk is not None:
        rows.append(("Brock (PanCan) risk", f"{pct(c.brock_risk)} (from the measured nodule and the note's facts)"))
    if c.model_brock_disagreement:
        rows.append(("Model vs Brock", c.model_brock_disagreement))
    if c.guideline_assumptions:
        rows.append(("Assumed", "; ".join(c.guideline_assumptions)))
    return rows


def uncertainty_line(content: ReportContent) -> str | None:
    """The plain line shown when the model is unsure (``Assessment.uncertain_line``), or None."""
    if not content.refer:
        return None
    return content.uncertain_line or "Model uncertain: needs a radiologist's read"


def interval_line(content: ReportContent) -> str:
    """The risk's interval, rounded as the risk is (``pct``), so the printed risk lies inside the printed bounds; named
    "risk interval" because a bare "interval" in a nodule report reads as a follow-up interval."""
    if content.interval is None:
        return "Risk interval: not available (the model has not been calibrated)"
    lo, hi = content.interval
    return f"Risk interval: [{pct(lo)}, {pct(hi)}]" + (f" ({content.interval_method})" if content.interval_method else "")


def set_line(content: ReportContent) -> str:
    level = f"{content.coverage_target:.0%} " if content.coverage_target is not None else ""
    members = ", ".join(content.prediction_set) if content.prediction_set else "empty"
    return f"{level}prediction set: {{{members}}}"


def contribution_rows(content: ReportContent) -> list[tuple[str, float | None, float | None]]:
    names = list(dict.fromkeys([*content.modality_contributions, *content.attention_rollout]))
    return [(n, content.modality_contributions.get(n), content.attention_rollout.get(n)) for n in names]


def share(v: float | None) -> str:
    if v is None:
        return "—"
    return pct(v) + (" (absent)" if v == 0 else "")


def provenance_rows(content: ReportContent) -> list[tuple[str, str]]:
    m = content.model
    if m.epsilon:
        dp = "; ".join(f"{node}: ε = {eps:.2f}" for node, eps in m.epsilon.items())
        if m.delta is not None:
            dp += f"; δ = {m.delta:g}"
        if not m.dp_secure:
            dp += f" ({NOT_PRIVATE})"
    else:
        dp = "none"
    rows = [("Model", m.name), ("Version", m.version), ("Manufacturer", m.manufacturer),
            ("Training sites", ", ".join(m.training_sites) or "—"), ("Federated", "yes" if m.federated else "no"),
            ("Differential privacy (lifetime, per node)", dp), ("Report time", content.created)]
    s = content.source
    if s is None:
        rows.append(("Source series", "none (no CT for this case)"))
        return rows
    rows += [("Study UID", s.study_uid), ("Series UID", s.series_uid),
             ("Frame of reference UID", s.frame_of_reference_uid), ("SOP class UID", s.sop_class_uid),
             ("Referenced instances", str(len(s.sop_instance_uids)))]
    if clinical(content):
        when = " ".join(x for x in (_date(s.study_date), s.study_time) if x)
        rows += [(k, v) for k, v in (("Study date", when), ("Study ID", s.study_id),
                                     ("Referring physician", person_name(s.referring_physician))) if v]
    if s.manufacturer:
        rows.append(("Scanner manufacturer", s.manufacturer))
    return rows


def phrase_colour(v: float) -> str:
    return POS if v > 0 else NEG if v < 0 else ZERO


__all__ = ["NEG", "POS", "TITLE", "ZERO", "clinical", "contribution_rows", "finding_rows", "interval_line",
           "mode_line", "patient_rows", "pct", "person_name", "phrase_colour", "provenance_rows", "set_line", "share"]
