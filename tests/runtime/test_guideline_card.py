"""The card's guideline half (``workbench.runtime.guideline_card``): which guideline leads, Brock from the measured
nodule and the note's facts, the prior CT in Lung-RADS, and the model-vs-Brock line, on hand-made cases whose
answers are read off the published tables."""

from __future__ import annotations

import pytest

from workbench.runtime import guidelines as g
from workbench.runtime.guideline_card import DISAGREEMENT_MARGIN, disagreement, guideline_card
from workbench.runtime.note_facts import NoteFacts, read_note_facts


def _nodule(long_mm: float = 7.0, short_mm: float = 6.0, kind: str = "solid", lobe: str = "RLL", **kw) -> dict:
    volume = 3.14159 / 6 * long_mm * short_mm * short_mm
    return {"long_axis_mm": long_mm, "short_axis_mm": short_mm, "mean_diameter_mm": round((long_mm + short_mm) / 2, 1),
            "volume_mm3": volume, "solid_component_mm": kw.pop("solid", None if kind != "solid" else long_mm),
            "nodule_type": kind, "lobe": lobe, "spiculated": kw.pop("spiculated", False),
            "emphysema": kw.pop("emphysema", False), "measurement_caveats": []}


def test_a_low_risk_incidental_solid_nodule_follows_fleischner() -> None:
    facts = read_note_facts("45 yo F, never smoker, no family history of lung cancer, no prior malignancy.")
    card, notes = guideline_card(_nodule(7.0, 6.0), facts, probability=0.03)
    brock = g.brock_risk(age=45, female=True, family_history=False, emphysema=False, diameter_mm=7.0,
                         nodule_type="solid", upper_lobe=False, nodule_count=1, spiculated=False)
    assert card["brock_risk"] == pytest.approx(brock, abs=5e-5) and brock < 0.05
    assert card["fleischner_risk"].startswith("low")
    # Table 1A: single solid 6-8 mm, low risk -> CT at 6-12 months, then consider CT at 18-24 months
    assert card["recommendation"] == "Fleischner 2017: " + g.rule("fleischner/solid/single/6-8/low").recommendation
    assert card["lung_rads"] == "3" and card["lung_rads_status"] == "baseline"
    assert card["model_brock_disagreement"] is None and notes == []


def test_a_known_cancer_hands_the_lead_to_bts() -> None:
    facts = read_note_facts("70 yo M, current smoker 50 pk-yrs. History of colon cancer s/p hemicolectomy 2015.")
    card, _ = guideline_card(_nodule(12.0, 10.0, lobe="RUL", spiculated=True, emphysema=True), facts, probability=0.6)
    assert card["fleischner_applies"] is False and "known primary cancer" in card["fleischner"]
    assert card["brock_risk"] >= g.BTS_BROCK_THRESHOLD
    assert card["recommendation"] == "BTS 2015: " + g.rule("bts/solid/>=8/brock>=10").recommendation
    assert card["lung_rads"] == "4X"  # 4A by size, spiculation measured: 4X
    assert card["brock_inputs"]["sources"]["emphysema"] == "CT"


def test_the_prior_ct_sets_the_lung_rads_status() -> None:
    stable = read_note_facts("60 yo M. Nodule stable compared with a chest CT obtained 2 years ago.")
    short = read_note_facts("60 yo M. Nodule stable since CT 4 months ago.")
    grown = read_note_facts("60 yo M. Nodule enlarged compared with a CT 8 months ago.")
    assert guideline_card(_nodule(7.0, 6.0), stable)[0]["lung_rads"] == "2"  # stable solid: category 2
    assert guideline_card(_nodule(7.0, 6.0), short)[0]["lung_rads_status"] == "baseline"  # too short to call stable
    assert guideline_card(_nodule(7.0, 6.0), grown)[0]["lung_rads"] == "4A"  # growing solid < 8 mm


def test_without_age_or_sex_brock_is_not_guessed() -> None:
    card, notes = guideline_card(_nodule(9.0, 8.0, lobe="LUL"), NoteFacts(smoking="current"), probability=0.5)
    assert card["brock_risk"] is None and any("age and sex" in n for n in notes)
    assert card["fleischner_risk"].startswith("high") and "smoking" in card["fleischner_risk"]
    # BTS >= 8 mm needs Brock: it says so instead of choosing
    assert card["bts"] is None and any(n.startswith("BTS: no recommendation") for n in notes)
    assert card["recommendation"].startswith("Fleischner 2017: ")


def test_the_disagreement_line_names_both_risks() -> None:
    assert disagreement(0.40, (0.3, 0.5), 0.40 - DISAGREEMENT_MARGIN) is None  # at the margin: no line
    line = disagreement(0.45, (0.35, 0.55), 0.08)
    assert line is not None and "45%" in line and "8%" in line and "higher" in line
    assert disagreement(None, None, 0.3) is None and disagreement(0.3, None, None) is None


def test_an_unmeasured_nodule_gets_no_guideline() -> None:
    card, notes = guideline_card({}, NoteFacts(age=60))
    assert card == {} and notes == ["guidelines: not applied (the nodule was not measured)"]
