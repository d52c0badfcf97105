"""Published nodule rules: worked examples from the Lung-RADS v2022, Fleischner 2017 and BTS 2015 tables (boundaries
especially), the Brock model against an independently published form and against the cohort generator's copy,
refusals that name the bad value, and the import contract that keeps the two Brock implementations apart."""

from __future__ import annotations

import ast
import itertools
import math
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from workbench.cohort.risk import brock_probability  # tests may read the generator; the module may not
from workbench.cohort.spec import PatientTruth
from workbench.errors import WorkbenchError
from workbench.runtime import guidelines as g

ROOT = Path(__file__).resolve().parents[2]


# --- Lung-RADS v2022 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mean_mm", "category"), [
    (5.9, "2"), (6.0, "3"),  # solid baseline: < 6 benign, 6 to < 8 probably benign
    (7.9, "3"), (8.0, "4A"),  # 8 to < 15 suspicious
    (14.9, "4A"), (15.0, "4B"),  # >= 15 very suspicious
])
def test_lung_rads_solid_baseline_boundaries(mean_mm: float, category: str) -> None:
    r = g.lung_rads(mean_mm, mean_mm)
    assert (r.category, r.mean_diameter_mm) == (category, mean_mm)
    assert r.citation == f"{g.LUNG_RADS_TABLE}, category {category}" and "Lung-RADS v2022" in r.citation


def test_lung_rads_management_text_per_category() -> None:
    assert g.lung_rads(5.0).management == "12-month screening LDCT."
    assert g.lung_rads(7.0).management == "6-month LDCT."
    four_a = g.lung_rads(10.0).management
    assert four_a.startswith("3-month LDCT") and "PET/CT may be considered" in four_a and "8 mm" in four_a
    four_b = g.lung_rads(20.0).management
    assert "diagnostic chest CT" in four_b and "PET/CT" in four_b and "tissue sampling" in four_b


def test_lung_rads_mean_diameter_is_the_rounded_mean_of_both_axes() -> None:
    # 6.1 x 5.8 -> 5.95 -> 6.0 (half up): category 3, where round-half-even arithmetic could give 5.9 (category 2).
    assert g.lung_rads_mean_diameter(6.1, 5.8) == 6.0
    assert g.lung_rads(6.1, 5.8).category == "3"
    assert g.lung_rads_mean_diameter(8.24, 7.66) == 8.0  # axes to one decimal first: 8.2 and 7.7
    assert g.lung_rads_mean_diameter(7.0) == 7.0  # one measurement: a round nodule


@pytest.mark.parametrize(("mean_mm", "category"), [(3.9, "2"), (4.0, "3"), (5.9, "3"), (6.0, "4A"), (7.9, "4A"),
                                                   (8.0, "4B")])
def test_lung_rads_new_solid_nodule(mean_mm: float, category: str) -> None:
    assert g.lung_rads(mean_mm, status="new").category == category


def test_lung_rads_growing_solid_nodule() -> None:
    assert g.lung_rads(5.0, status="growing").category == "4A"  # growing < 8 mm
    assert g.lung_rads(7.9, status="growing").category == "4A"
    assert g.lung_rads(8.0, status="growing").category == "4B"  # growing >= 8 mm
    assert g.lung_rads(6.0, status="slow_growing").category == "4B"  # v2022: slow growth over several screens


def test_lung_rads_growth_is_more_than_1_5_mm_within_12_months() -> None:
    assert g.lung_rads_growth(5.0, 6.5, 12) == "stable"  # exactly 1.5 mm is not growth
    assert g.lung_rads_growth(5.0, 6.6, 12) == "growing"
    assert g.lung_rads_growth(5.0, 6.6, 3) == "growing"
    with pytest.raises(WorkbenchError, match="13"):
        g.lung_rads_growth(5.0, 9.0, 13)


@pytest.mark.parametrize(("total", "solid", "category"), [
    (5.9, 3.0, "2"),  # < 6 mm total at baseline
    (6.0, 5.9, "3"),  # >= 6 total, solid component < 6
    (10.0, 6.0, "4A"),  # solid component 6 to < 8
    (10.0, 7.9, "4A"),
    (10.0, 8.0, "4B"),  # solid component >= 8
])
def test_lung_rads_part_solid_baseline(total: float, solid: float, category: str) -> None:
    r = g.lung_rads(total, nodule_type="part-solid", solid_long_axis_mm=solid)
    assert (r.category, r.solid_mean_diameter_mm) == (category, solid)


def test_lung_rads_part_solid_new_or_growing_solid_component() -> None:
    assert g.lung_rads(5.0, nodule_type="part_solid", solid_long_axis_mm=2.0, status="new").category == "3"
    assert g.lung_rads(10.0, nodule_type="part_solid", solid_long_axis_mm=3.9, status="new").category == "4A"
    assert g.lung_rads(10.0, nodule_type="part_solid", solid_long_axis_mm=4.0, status="new").category == "4B"
    assert g.lung_rads(12.0, nodule_type="part_solid", solid_long_axis_mm=3.0, status="growing").category == "4A"
    assert g.lung_rads(12.0, nodule_type="part_solid", solid_long_axis_mm=4.5, status="growing").category == "4B"


def test_lung_rads_ground_glass() -> None:
    assert g.lung_rads(29.9, nodule_type="ground-glass").category == "2"
    assert g.lung_rads(30.0, nodule_type="ground-glass").category == "3"
    assert g.lung_rads(35.0, nodule_type="non_solid", status="new").category == "3"
    assert g.lung_rads(35.0, nodule_type="non_solid", status="stable").category == "2"  # >= 30 stable
    assert g.lung_rads(35.0, nodule_type="non_solid", status="slow_growing").category == "2"
    assert g.lung_rads(12.0, nodule_type="ggn", status="growing").category == "2"  # < 30 even when growing
    # crossing the 30 mm threshold without meeting the growth definition: re-classified by size
    assert g.lung_rads(30.0, nodule_type="ggn", status="stable", prior_mean_mm=29.9).category == "3"


def test_lung_rads_4x_needs_a_category_3_or_4_nodule() -> None:
    r = g.lung_rads(10.0, suspicious_features=True)
    assert r.category == "4X" and r.management == g.lung_rads(20.0).management  # managed as 4B
    assert g.lung_rads(7.0, suspicious_features=True).category == "4X"
    assert g.lung_rads(5.0, suspicious_features=True).category == "2"  # a benign-size nodule stays 2


def test_lung_rads_stepped_management_of_stable_nodules() -> None:
    assert g.lung_rads(10.0, status="stable", prior_category="4A").category == "3"  # 4A stable at 3 months
    assert g.lung_rads(7.0, status="stable", prior_category="3").category == "2"  # 3 stable at 6 months
    assert g.lung_rads(20.0, status="stable", prior_category="4B").category == "4B"  # only proven benign steps down
    assert g.lung_rads(10.0, status="stable").category == "2"
    # 7.9 -> 8.0 is not growth (+0.1 mm) but crosses the 8 mm threshold: re-classified by size
    assert g.lung_rads(8.0, status="stable", prior_category="3", prior_mean_mm=7.9).category == "4A"
    r = g.lung_rads(10.0, nodule_type="part_solid", solid_long_axis_mm=6.0, status="stable", prior_category="3",
                    prior_mean_mm=10.0, prior_solid_mean_mm=5.9)
    assert r.category == "4A"


def test_lung_rads_benign_and_juxtapleural_findings() -> None:
    r = g.lung_rads(benign_calcification_or_fat=True)
    assert (r.category, r.management, r.mean_diameter_mm) == ("1", "12-month screening LDCT.", None)
    assert g.lung_rads(9.9, juxtapleural=True).category == "2"
    assert g.lung_rads(10.0, juxtapleural=True).category == "4A"  # >= 10 mm: the solid size rules apply
    assert g.lung_rads(9.0, juxtapleural=True, status="growing").category == "4B"


# --- Fleischner 2017 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("long_mm", "short_mm", "size", "text"), [
    (5.4, 5.4, 5, "No routine follow-up."),
    (6.0, 5.0, 6, "CT at 6-12 months, then consider CT at 18-24 months."),  # 5.5 rounds to 6
    (8.8, 8.0, 8, "CT at 6-12 months, then consider CT at 18-24 months."),  # 8.4 rounds to 8
    (9.0, 8.0, 9, "Consider CT at 3 months, PET/CT, or tissue sampling."),  # 8.5 rounds to 9 (half up, not even)
])
def test_fleischner_single_solid_low_risk(long_mm: float, short_mm: float, size: int, text: str) -> None:
    r = g.fleischner(long_mm, short_mm)
    assert (r.applies, r.size_mm, r.recommendation) == (True, size, text)
    assert r.citation.startswith(g.FLEISCHNER_SOLID_TABLE) and "single" in r.citation and "low risk" in r.citation


def test_fleischner_solid_high_risk_and_multiple() -> None:
    assert g.fleischner(4.0, high_risk=True).recommendation == "Optional CT at 12 months."
    assert g.fleischner(7.0, high_risk=True).recommendation == "CT at 6-12 months, then CT at 18-24 months."
    assert g.fleischner(12.0, high_risk=True).recommendation == "Consider CT at 3 months, PET/CT, or tissue sampling."
    assert g.fleischner(5.0, multiple=True).recommendation == "No routine follow-up."
    assert g.fleischner(5.0, multiple=True, high_risk=True).recommendation == "Optional CT at 12 months."
    assert g.fleischner(7.0, multiple=True).recommendation == "CT at 3-6 months, then consider CT at 18-24 months."
    r = g.fleischner(10.0, multiple=True, high_risk=True)
    assert (r.recommendation, r.size_class) == ("CT at 3-6 months, then at 18-24 months.", ">8")
    assert r.key == "fleischner/solid/multiple/>8/high"


@pytest.mark.parametrize(("volume", "size_class"), [(99.0, "<6"), (100.0, "6-8"), (250.0, "6-8"), (251.0, ">8")])
def test_fleischner_solid_by_volume(volume: float, size_class: str) -> None:
    r = g.fleischner(volume_mm3=volume)
    assert (r.size_class, r.size_mm) == (size_class, None)


def test_fleischner_subsolid_nodules() -> None:
    assert g.fleischner(5.0, nodule_type="ground_glass").recommendation == "No routine follow-up."
    r = g.fleischner(6.0, nodule_type="ground_glass")
    assert r.recommendation == "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years."
    assert r.citation.startswith(g.FLEISCHNER_SUBSOLID_TABLE)
    assert g.fleischner(5.0, nodule_type="part-solid").recommendation == "No routine follow-up."
    part = g.fleischner(7.0, nodule_type="part-solid").recommendation
    assert part.startswith("CT at 3-6 months to confirm persistence") and "annual CT" in part and "5 years" in part
    assert g.fleischner(4.0, nodule_type="ggn", multiple=True).recommendation == (
        "CT at 3-6 months. If stable, consider CT at 2 and 4 years.")
    assert g.fleischner(6.0, nodule_type="part_solid", multiple=True).recommendation == (
        "CT at 3-6 months. Subsequent management based on the most suspicious nodule(s).")
    assert g.fleischner(volume_mm3=100.0, nodule_type="ggn").size_class == ">=6"


def test_fleischner_says_when_it_does_not_apply() -> None:
    assert g.fleischner(7.0, age=35).applies
    for kwargs, why in (({"age": 34}, "age 34 < 35"), ({"screening": True}, "screening"),
                        ({"immunocompromised": True}, "immunocompromised"), ({"known_cancer": True}, "cancer")):
        r = g.fleischner(7.0, **kwargs)
        assert not r.applies and r.size_class is None and r.key == "fleischner/not-applicable"
        assert any(why in reason for reason in r.not_applicable_because) and why in r.recommendation
        assert r.citation == g.FLEISCHNER_SCOPE
    assert len(g.fleischner(7.0, age=30, screening=True).not_applicable_because) == 2


# --- BTS 2015 --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("diameter", "key"), [(4.9, "bts/solid/<5"), (5.0, "bts/solid/5-6"), (5.9, "bts/solid/5-6"),
                                               (6.0, "bts/solid/6-8"), (7.9, "bts/solid/6-8")])
def test_bts_solid_by_diameter(diameter: float, key: str) -> None:
    r = g.bts(diameter)
    assert r.key == key and r.citation == g.rule(key).citation and "BTS" not in r.recommendation
    assert r.citation.startswith(g.BTS_2015)


def test_bts_solid_by_volume_and_the_brock_threshold() -> None:
    assert g.bts(volume_mm3=79.0).recommendation == "No follow-up."
    assert g.bts(volume_mm3=80.0).key == "bts/solid/6-8"
    assert g.bts(volume_mm3=299.0).key == "bts/solid/6-8"
    with pytest.raises(WorkbenchError, match="Brock probability"):
        g.bts(volume_mm3=300.0)  # >= 300 mm3: the Brock risk decides
    low = g.bts(8.0, brock_probability=0.099)
    assert low.key == "bts/solid/>=8/brock<10" and low.recommendation.startswith("CT surveillance")
    high = g.bts(8.0, brock_probability=0.10)
    assert high.key == "bts/solid/>=8/brock>=10" and high.recommendation.startswith("PET-CT")
    assert "Herder" in high.recommendation and high.citation == g.BTS_ALGORITHM_3


def test_bts_subsolid_pathway() -> None:
    assert g.bts(4.9, nodule_type="ggn").key == "bts/subsolid/<5"
    assert g.bts(5.0, nodule_type="ggn").recommendation == "CT at 3 months to confirm persistence."
    assert g.bts(9.0, nodule_type="part_solid", three_month_ct="resolved").recommendation == "Discharge."
    assert g.bts(9.0, nodule_type="part_solid", three_month_ct="grown").recommendation.startswith("Consider resection")
    assert g.bts(9.0, nodule_type="ggn", three_month_ct="persistent", brock_probability=0.05).recommendation == (
        "CT surveillance at 1, 2 and 4 years from baseline.")
    assert g.bts(9.0, nodule_type="ggn", three_month_ct="persistent", brock_probability=0.2).key == (
        "bts/subsolid/persistent/brock>=10")
    assert all(g.bts(9.0, nodule_type="ggn", three_month_ct=s, brock_probability=0.2).citation == g.BTS_ALGORITHM_4
               for s in g.BTS_SUBSOLID_FOLLOW_UP)


def test_bts_takes_the_brock_risk_from_brock_risk() -> None:
    # 68-year-old woman, 12 mm spiculated solid nodule in the right upper lobe, the only nodule: well above 10%.
    p = g.brock_risk(age=68, female=True, family_history=False, emphysema=True, diameter_mm=12.0, nodule_type="solid",
                     upper_lobe=True, nodule_count=1, spiculated=True)
    assert p > 0.10 and g.bts(12.0, brock_probability=p).key == "bts/solid/>=8/brock>=10"
    q = g.brock_risk(age=55, female=False, family_history=False, emphysema=False, diameter_mm=8.0,
                     nodule_type="solid", upper_lobe=False, nodule_count=6, spiculated=False)
    assert q < 0.10 and g.bts(8.0, brock_probability=q).key == "bts/solid/>=8/brock<10"
    assert g.bts(3.0, benign_features=True).key == "bts/benign"


# --- Brock / PanCan --------------------------------------------------------------------------------------------

def test_brock_at_its_centre_is_its_intercept() -> None:
    # 62 years, male, no family history or emphysema, one 4 mm solid lower-lobe nodule among 4, not spiculated:
    # every centred term is zero, so the log-odds is the published constant -6.7892.
    z = g.brock_logit(age=62, female=False, family_history=False, emphysema=False, diameter_mm=4.0,
                      nodule_type="solid", upper_lobe=False, nodule_count=4, spiculated=False)
    assert z == pytest.approx(-6.7892, abs=1e-8)
    assert g.brock_size_term(4.0) == pytest.approx(0.0, abs=1e-8)


def test_brock_centring_matches_an_independently_published_uncentred_form() -> None:
    # No worked patient example of the full model was found in the sources searched. An independent re-publication
    # (Eur Radiol 2019;29:5367-5377, Table 2, PMC6717521) lists the same coefficients with the centring folded into
    # the constant: intercept 0.2761 with raw age, (diameter/10)^-0.5 and raw nodule count. That constant follows only
    # if age is centred at 62, size at 4 mm and nodule count at 4, so it checks the centring this module applies.
    c = g.BROCK
    uncentred = (c.intercept - c.age * c.age_centre - c.size * c.size_centre_term - c.nodule_count * c.count_centre)
    assert uncentred == pytest.approx(0.2761, abs=5e-5)
    z = g.brock_logit(age=70, female=True, family_history=True, emphysema=False, diameter_mm=15,
                      nodule_type="part_solid", upper_lobe=True, nodule_count=2, spiculated=True)
    raw = (0.2761 + 0.0287 * 70 + 0.6011 + 0.2961 - 5.3854 * (15 / 10) ** -0.5 + 0.377 + 0.6581 - 0.0824 * 2
           + 0.7729)
    assert z == pytest.approx(raw, abs=1e-3)


def test_brock_term_directions_follow_the_paper() -> None:
    base = {"age": 60, "female": False, "family_history": False, "emphysema": False, "diameter_mm": 7.0,
            "nodule_type": "solid", "upper_lobe": False, "nodule_count": 2, "spiculated": False}
    p = g.brock_risk(**base)
    for change in ({"age": 70}, {"female": True}, {"family_history": True}, {"emphysema": True},
                   {"diameter_mm": 12.0}, {"nodule_type": "part_solid"}, {"upper_lobe": True}, {"nodule_count": 1},
                   {"spiculated": True}):
        assert g.brock_risk(**{**base, **change}) > p, change
    assert g.brock_risk(**{**base, "nodule_type": "ground-glass"}) < p  # non-solid: lower risk than solid
    assert g.brock_risk(**{**base, "nodule_count": 5}) < p


def _truth(age: int, female: bool, family: bool, emphysema: bool, diameter: float, kind: str, lobe: str,
           count: int, spiculated: bool) -> PatientTruth:
    """A made-up patient in the generator's record; the fields Brock does not read are arbitrary."""
    return PatientTruth(case_id="grid", site="s", split="test", age=age, female=female, family_history=family,
                        smoking="former", pack_years=30, prior_cancer=False, prior_cancer_site=None, prior_ct="none",
                        prior_ct_years=None, diameter_mm=diameter, nodule_type=kind, spiculated=spiculated, lobe=lobe,
                        nodule_count=count, emphysema=emphysema, emphysema_in_note=False, has_ct=True, has_note=True,
                        logit=0.0, risk=0.0, label=0)


def test_brock_equals_the_generators_brock_on_a_grid() -> None:
    # The generator's brock_probability (workbench/cohort/risk.py) uses the same nine terms with the same centring
    # (age - 62, size transform - 1.58113883, count - 4) and no history, prior-CT or enrichment terms, so the whole
    # model is compared, not a subset. Its upper_lobe is lobe in (RUL, LUL); RLL stands for "not upper".
    grid = itertools.product((40, 62, 81), (False, True), (False, True), (False, True),
                             (1.2, 4.0, 5.9, 8.0, 12.3, 25.0, 48.0), ("solid", "part_solid", "non_solid"),
                             ("RUL", "LUL", "RLL", "RML"), (1, 4, 11), (False, True))
    n = 0
    for age, female, family, emphysema, diameter, kind, lobe, count, spiculated in grid:
        truth = _truth(age, female, family, emphysema, diameter, kind, lobe, count, spiculated)
        ours = g.brock_risk(age=age, female=female, family_history=family, emphysema=emphysema, diameter_mm=diameter,
                            nodule_type=kind, upper_lobe=lobe in ("RUL", "LUL"), nodule_count=count,
                            spiculated=spiculated)
        assert ours == pytest.approx(brock_probability(truth), rel=1e-12, abs=1e-15), truth
        n += 1
    assert n == 3 * 2 * 2 * 2 * 7 * 3 * 4 * 3 * 2


# --- refusals --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "named"), [
    (lambda: g.lung_rads(-3.0), "-3.0"),
    (lambda: g.lung_rads(0.0), "0.0"),
    (lambda: g.lung_rads(math.nan), "nan"),
    (lambda: g.lung_rads(6.0, nodule_type="cavitary"), "cavitary"),
    (lambda: g.lung_rads(6.0, nodule_type="subsolid"), "subsolid"),
    (lambda: g.lung_rads(6.0, status="shrinking"), "shrinking"),
    (lambda: g.lung_rads(6.0, 7.0), "7"),  # short axis longer than the long axis
    (lambda: g.lung_rads(6.0, nodule_type="part_solid"), "solid_long_axis_mm"),
    (lambda: g.lung_rads(6.0, nodule_type="part_solid", solid_long_axis_mm=7.0), "7"),
    (lambda: g.lung_rads(6.0, solid_long_axis_mm=2.0), "solid"),
    (lambda: g.lung_rads(6.0, status="stable", prior_category="5"), "'5'"),
    (lambda: g.fleischner(-2.0), "-2.0"),
    (lambda: g.fleischner(6.0, nodule_type="blob"), "blob"),
    (lambda: g.fleischner(6.0, volume_mm3=120.0), "exactly one"),
    (lambda: g.fleischner(6.0, age=-1), "-1"),
    (lambda: g.fleischner(6.0, multiple="yes"), "'yes'"),
    (lambda: g.bts(-5.0), "-5.0"),
    (lambda: g.bts(9.0, brock_probability=1.5), "1.5"),
    (lambda: g.bts(9.0, nodule_type="ggn", three_month_ct="gone"), "gone"),
    (lambda: g.bts(nodule_type="ggn", volume_mm3=400.0), "400.0"),
    (lambda: g.bts(9.0, volume_mm3=400.0), "exactly one"),
    (lambda: g.brock_risk(age=60, female=False, family_history=False, emphysema=False, diameter_mm=-4.0,
                          nodule_type="solid", upper_lobe=False, nodule_count=1, spiculated=False), "-4.0"),
    (lambda: g.brock_risk(age=60, female=False, family_history=False, emphysema=False, diameter_mm=4.0,
                          nodule_type="calcified", upper_lobe=False, nodule_count=1, spiculated=False), "calcified"),
    (lambda: g.brock_risk(age=60, female=False, family_history=False, emphysema=False, diameter_mm=4.0,
                          nodule_type="solid", upper_lobe=False, nodule_count=0, spiculated=False), "0"),
    (lambda: g.rule("lung-rads/5"), "lung-rads/5"),
])
def test_bad_input_is_refused_naming_the_value(call, named: str) -> None:  # noqa: ANN001
    with pytest.raises(WorkbenchError) as err:
        call()
    assert named in str(err.value)


# --- the rule table and the import contract --------------------------------------------------------------------

def test_every_rule_row_carries_its_citation() -> None:
    assert len({r.key for r in g.RULES}) == len(g.RULES) == len(g.RULES_BY_KEY)
    years = {g.LUNG_RADS: "v2022", g.FLEISCHNER: "2017", g.BTS: "2015"}
    for r in g.RULES:
        assert r.finding and r.recommendation and r.guideline in years
        where = r.citation.lower()  # the table, algorithm or section of the publication
        assert years[r.guideline] in r.citation and any(w in where for w in ("table", "algorithm", "scope",
                                                                               "recommendations")), r
    assert {r.key.split("/")[1] for r in g.RULES if r.guideline == g.LUNG_RADS} == set(g.LUNG_RADS_CATEGORIES)
    assert "2013" in g.BROCK_2013 and "McWilliams" in g.BROCK_2013


def test_the_module_imports_nothing_from_the_cohort_generator() -> None:
    tree = ast.parse((ROOT / "workbench/runtime/guidelines.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("workbench.cohort") for m in imported), imported
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    contract = next(c for c in contracts if c["id"] == "guidelines-independent-of-generator")
    assert contract["type"] == "forbidden"
    assert contract["source_modules"] == ["workbench.runtime.guidelines"]
    assert contract["forbidden_modules"] == ["workbench.cohort"]


def test_the_import_contract_catches_a_copied_generator(tmp_path: Path) -> None:
    """``lint-imports`` on a scratch copy whose guidelines module imports the generator's Brock must name it."""
    for pkg in ("workbench", "federated"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    module = tmp_path / "workbench/runtime/guidelines.py"
    module.write_text(module.read_text() + "\nfrom workbench.cohort.risk import brock_logit as _copied  # noqa\n")
    r = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0
    assert "published guideline rules and the Brock model never import the cohort generator BROKEN" in r.stdout
    assert "workbench.runtime.guidelines -> workbench.cohort.risk" in r.stdout
