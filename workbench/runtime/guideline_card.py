"""The nodule card's guideline half: Lung-RADS with the prior CT, Fleischner, BTS, Brock, and where the model and Brock part.

Inputs are what a radiologist would use: the nodule measured from the CT (``nodule_card.measured_nodule``: size,
volume, type, lobe, spiculation and emphysema from the image) and the patient facts the note states
(``note_facts.read_note_facts``, each with the words it was read from). Every output names its guideline and
citation (``guidelines.RULES``), and every input the note did not state is listed as an assumption, so the card
can be checked by hand.

Choices (each also in ``guideline_assumptions`` when it applies):
- The lead recommendation is Fleischner 2017: these are incidental nodules seen on a CT done for another reason,
  the setting it was written for (the notes themselves say they follow it). Where it does not apply (a known
  cancer, age < 35) the BTS 2015 pathway leads; BTS is shown beside it in every case.
- Fleischner's "high risk": the guideline defers to the ACCP estimate (low < 5%); the Brock probability below is
  that estimate. Without age and sex, any risk factor the guideline names (smoking, a relative with lung cancer,
  emphysema, upper lobe, spiculation) makes the patient high risk, the cautious side.
- The measurement is of the marked nodule only: the nodule count is 1 (Brock's count term and Fleischner's
  "multiple" assume no other nodule; a reader who sees more corrects it).
- Lung-RADS: a note saying the nodule is stable on a CT at least 12 months earlier gives the "stable" category; one
  saying it has grown gives "growing"; otherwise baseline. Spiculation, as measured, is the suspicious feature of 4X.
"""

from __future__ import annotations

from typing import Any

from workbench.errors import WorkbenchError
from workbench.runtime.guidelines import (
    BROCK_2013,
    PART_SOLID,
    SOLID,
    brock_risk,
    bts,
    fleischner,
    lung_rads,
)
from workbench.runtime.note_facts import NoteFacts

# The card says "the model and Brock disagree" when their risks differ by more than this (absolute probability):
# 10 percentage points is larger than the Brock model's own calibration error in its validation cohorts and large
# enough to move a patient across the BTS 10% threshold or the ACCP 5%/65% bands.
DISAGREEMENT_MARGIN = 0.10
UPPER_LOBES = ("RUL", "LUL")
STABLE_MIN_MONTHS = 12.0


def _brock(measured: dict[str, Any], facts: NoteFacts, assumptions: list[str]) -> tuple[float | None, str | None,
                                                                                        dict[str, Any]]:
    """The Brock probability, or None with the reason; the inputs with where each came from."""
    missing = [k for k, v in (("age", facts.age), ("sex", facts.female)) if v is None]
    inputs = {"age": facts.age, "female": facts.female,
              "family_history": bool(facts.family_history), "emphysema": bool(measured.get("emphysema")
                                                                               or facts.emphysema),
              "diameter_mm": measured["long_axis_mm"], "nodule_type": measured["nodule_type"],
              "upper_lobe": measured["lobe"] in UPPER_LOBES, "nodule_count": 1,  # see nodule_count above
              "spiculated": bool(measured.get("spiculated"))}
    sources = {"age": "note", "female": "note",
               "family_history": "note" if facts.family_history is not None else "assumed: not stated, taken as no",
               "emphysema": ("CT" if measured.get("emphysema") else "note" if facts.emphysema else
                             "CT (none measured)"),
               "diameter_mm": "CT (long axis)", "nodule_type": "CT", "upper_lobe": "CT (lobe)",
               "nodule_count": "assumed: the marked nodule only", "spiculated": "CT (margin)"}
    if facts.family_history is None:
        assumptions.append("family history of lung cancer not stated in the note: taken as none for Brock")
    if missing:
        return None, f"the note does not state the patient's {' and '.join(missing)}", {"sources": sources}
    try:
        p = brock_risk(**inputs)
    except WorkbenchError as exc:
        return None, str(exc), {"sources": sources}
    return p, None, {**inputs, "sources": sources}


def _high_risk(brock: float | None, measured: dict[str, Any], facts: NoteFacts) -> tuple[bool, str]:
    if brock is not None:
        return brock >= 0.05, f"Brock {brock:.1%} {'>=' if brock >= 0.05 else '<'} 5% (ACCP low-risk bound)"
    factors = [name for name, present in (
        ("smoking history", facts.smoking in ("former", "current")), ("a relative with lung cancer", facts.family_history),
        ("emphysema", measured.get("emphysema") or facts.emphysema), ("upper lobe", measured["lobe"] in UPPER_LOBES),
        ("spiculation", measured.get("spiculated"))) if present]
    return bool(factors), ("risk factors: " + ", ".join(factors)) if factors else "no risk factor stated"


def _lung_rads_status(facts: NoteFacts) -> str:
    if facts.prior_ct == "growing":
        return "growing"
    if facts.prior_ct == "stable" and (facts.prior_ct_months or 0.0) >= STABLE_MIN_MONTHS:
        return "stable"
    return "baseline"


def guideline_card(measured: dict[str, Any], facts: NoteFacts, probability: float | None = None,
                   interval: tuple[float, float] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The card's guideline fields (``ReportContent`` names) and notes on what could not be assessed.

    ``measured``: ``measured_nodule``'s fields (``{}``: not measured, then only the reasons come back);
    ``probability``/``interval``: the model's stated risk, for the disagreement line."""
    notes: list[str] = []
    if not measured:
        return {}, ["guidelines: not applied (the nodule was not measured)"]
    assumptions: list[str] = ["nodule count: only the marked nodule was measured (taken as a single nodule)"]
    out: dict[str, Any] = {"note_facts": facts.to_dict(), "nodule_count": 1}  # the assumption below
    kind, solid = measured["nodule_type"], measured.get("solid_component_mm")

    brock, why_not, brock_inputs = _brock(measured, facts, assumptions)
    out.update(brock_risk=None if brock is None else round(brock, 4), brock_inputs=brock_inputs,
               brock_citation=BROCK_2013)
    if brock is None:
        notes.append(f"Brock: not computed ({why_not})")

    status = _lung_rads_status(facts)
    try:
        lr = lung_rads(measured["long_axis_mm"], measured["short_axis_mm"], nodule_type=kind,
                       solid_long_axis_mm=solid if kind == PART_SOLID else None, status=status,
                       suspicious_features=bool(measured.get("spiculated")))
        prior = ("baseline (no prior CT showing the nodule stable for 12 months or growing)" if status == "baseline"
                 else f"stable on a CT {facts.prior_ct_months:g} months earlier (per the note)" if status == "stable"
                 else "grown since a prior CT (per the note)")
        out.update(lung_rads=lr.category, lung_rads_management=lr.management, lung_rads_status=status,
                   lung_rads_reason=f"{lr.reason}; {prior} ({lr.citation})")
    except WorkbenchError as exc:
        notes.append(f"Lung-RADS: not assigned ({exc})")

    high, high_why = _high_risk(brock, measured, facts)
    fl = fleischner(measured["long_axis_mm"], measured["short_axis_mm"], nodule_type=kind, high_risk=high,
                    age=facts.age, known_cancer=bool(facts.prior_cancer))
    out.update(fleischner=fl.recommendation, fleischner_applies=fl.applies, fleischner_citation=fl.citation,
               fleischner_risk=("high" if high else "low") + f" ({high_why})")
    try:
        b = (bts(nodule_type=kind, volume_mm3=measured["volume_mm3"], brock_probability=brock) if kind == SOLID
             else bts(measured["long_axis_mm"], nodule_type=kind, brock_probability=brock))
        out.update(bts=b.recommendation, bts_citation=b.citation)
    except WorkbenchError as exc:
        out.update(bts=None, bts_citation=None)
        notes.append(f"BTS: no recommendation ({exc})")

    if fl.applies:
        out.update(recommendation=f"Fleischner 2017: {fl.recommendation}", recommendation_citation=fl.citation)
    elif out.get("bts"):
        out.update(recommendation=f"BTS 2015: {out['bts']}", recommendation_citation=out["bts_citation"])
    else:
        out.update(recommendation=fl.recommendation, recommendation_citation=fl.citation)
    out["guideline_assumptions"] = assumptions
    out["model_brock_disagreement"] = disagreement(probability, interval, brock)
    return out, notes


def disagreement(probability: float | None, interval: tuple[float, float] | None, brock: float | None) -> str | None:
    """One plain line when the model's risk and Brock differ by more than ``DISAGREEMENT_MARGIN``, else None."""
    if probability is None or brock is None or abs(probability - brock) <= DISAGREEMENT_MARGIN:
        return None
    side = "higher" if probability > brock else "lower"
    span = f" (interval {interval[0]:.0%}-{interval[1]:.0%})" if interval else ""
    return (f"The model's risk {probability:.0%}{span} is {side} than the Brock score {brock:.0%} by more than "
            f"{round(100 * DISAGREEMENT_MARGIN)} percentage points: read the CT and the note before relying on either.")


__all__ = ["DISAGREEMENT_MARGIN", "disagreement", "guideline_card"]
