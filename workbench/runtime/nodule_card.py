"""The nodule card: what the CT says of the nodule at its mark, and what the guidelines make of it with the note's facts.

One function, so the reports (``workbench.report.build``) and the case-review screen (``workbench.ui.review``)
state the same size, type, lobe and category from the same measurement (``workbench.runtime.measure``) and rule
table (``workbench.runtime.guidelines``). A case that cannot be measured gets no size and a note saying why: a
report states no size rather than a wrong one.
"""

from __future__ import annotations

from typing import Any

from workbench.errors import WorkbenchError
from workbench.runtime.guidelines import PART_SOLID

NODULE_TYPE_WORDS = {"solid": "solid", "part_solid": "part-solid", "non_solid": "ground-glass"}
LOBE_WORDS = {"RUL": "right upper lobe", "RML": "right middle lobe", "RLL": "right lower lobe",
              "LUL": "left upper lobe", "LLL": "left lower lobe"}
# SNOMED CT concept of each lobe: the coded finding site of the DICOM SR and the body site of the FHIR Observations
LOBE_SNOMED = {"RUL": ("45653009", "Upper lobe of right lung"), "RML": ("72481006", "Middle lobe of right lung"),
               "RLL": ("266005", "Lower lobe of right lung"), "LUL": ("44714003", "Upper lobe of left lung"),
               "LLL": ("90572001", "Lower lobe of left lung")}


def type_words(nodule_type: str, solid_component_mm: float | None = None) -> str:
    """The type as a reader says it ("part-solid, solid component 3.0 mm"), for every screen and report."""
    kind = NODULE_TYPE_WORDS.get(nodule_type, nodule_type)
    return kind if solid_component_mm is None else f"{kind}, solid component {solid_component_mm:.1f} mm"


def measured_nodule(case: Any, notes: list[str], image: Any = None, measurement: Any = None) -> dict[str, Any]:
    """The nodule measured from the CT at its marked centre (``workbench.runtime.measure``) and its Lung-RADS v2022
    baseline category, as ``ReportContent`` fields; ``{}`` with a note saying why when it cannot be measured (no
    CT, no mark, nothing at the mark), so the report states no size rather than a wrong one. ``image``: the case's
    series already loaded (``load_ct_series``), so a caller that shows it does not decode it twice; ``measurement``:
    the ``measure_nodule`` result already made (the viewer draws its outline), so it is not fitted twice."""
    from workbench.runtime.measure import measure_case, measure_image

    if case.series_dir is None or case.nodule_lps_mm is None:
        notes.append("size: not measured (no CT series or no nodule mark)")
        return {}
    try:
        m = (measurement if measurement is not None else measure_case(case) if image is None else
             measure_image(image, case.nodule_lps_mm, where=case.case_id))
    except WorkbenchError as exc:
        notes.append(f"size: not measured ({exc})")
        return {}
    solid = m.solid_component_mm if m.nodule_type == PART_SOLID else None
    out: dict[str, Any] = {"long_axis_mm": m.long_axis_mm, "short_axis_mm": m.short_axis_mm,
                           "mean_diameter_mm": m.mean_diameter_mm, "volume_mm3": m.volume_mm3,
                           "solid_component_mm": solid, "nodule_type": m.nodule_type, "lobe": m.lobe,
                           "spiculated": m.spiculated, "emphysema": m.emphysema,
                           "measurement_caveats": list(m.caveats)}
    notes.append("size: measured from the CT at the marked centre (a partial-volume model fitted to the image: long "
                 "and short axis on the axial slice of greatest extent, mean diameter as Lung-RADS v2022 defines it, "
                 "volume of the fitted ellipsoid); type and lobe from the same fit; spiculation from dense strands "
                 "just outside the fitted surface, emphysema from the lung's share below -950 HU; not a learned "
                 "estimate")
    return out


def nodule_card(case: Any, notes: list[str], image: Any = None, *, probability: float | None = None,
                interval: tuple[float, float] | None = None, measurement: Any = None) -> dict[str, Any]:
    """The whole card: the measured nodule (``measured_nodule``) and the guidelines applied to it with the
    de-identified note's facts (``guideline_card.guideline_card``): Lung-RADS, Fleischner, BTS, Brock, the lead
    recommendation and, given the model's ``probability``, a line when the model and Brock disagree."""
    from workbench.data.deid import deidentify
    from workbench.runtime.guideline_card import guideline_card
    from workbench.runtime.note_facts import read_note_facts

    measured = measured_nodule(case, notes, image, measurement)
    facts = read_note_facts(deidentify(case.note) if case.note else None)
    guide, guide_notes = guideline_card(measured, facts, probability, interval)
    notes.extend(guide_notes)
    return {**measured, **guide}


__all__ = ["LOBE_SNOMED", "LOBE_WORDS", "NODULE_TYPE_WORDS", "measured_nodule", "nodule_card", "type_words"]
