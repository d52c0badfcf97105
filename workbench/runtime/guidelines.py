"""Published nodule-management rules as data, and small pure functions that apply them, each answer cited.

A clinician reads a model's risk next to what the guidelines say; both must be checkable by hand. So every
recommendation below is a row of ``RULES`` (guideline, key, finding, recommendation, citation), and the functions
only choose a row:

- ``lung_rads``: ACR Lung-RADS v2022, screening low-dose CT (baseline, new, growing, stable; 4X).
- ``fleischner``: Fleischner Society 2017, incidental nodules in adults >= 35 (with a does-not-apply flag).
- ``bts``: British Thoracic Society 2015, all nodules in adults (size/volume, then the Brock 10% threshold).
- ``brock_risk``: the Brock University / PanCan full model with spiculation (McWilliams et al., NEJM 2013).

Independence: this module never imports the cohort generator (``workbench.cohort``), which has its own Brock
function; an import-linter contract in pyproject.toml enforces it, and the tests check the two agree. Everything
here is pure: no I/O, no state, no model. Sizes are millimetres, volumes mm^3, probabilities in [0, 1].

Where a table leaves a case open, or where this implementation had to choose, a comment starting ``Judgement:``
says what was chosen and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

from workbench.errors import WorkbenchError

# --- citations -------------------------------------------------------------------------------------------------

LUNG_RADS_V2022 = ("ACR Lung-RADS v2022 (American College of Radiology, released November 2022; Christensen J et al., "
                   "J Am Coll Radiol 2024;21(3):473-488)")
FLEISCHNER_2017 = ("Fleischner Society 2017 (MacMahon H et al., Guidelines for Management of Incidental Pulmonary "
                   "Nodules Detected on CT Images, Radiology 2017;284(1):228-243)")
BTS_2015 = ("British Thoracic Society 2015 (Callister MEJ et al., BTS guidelines for the investigation and management "
            "of pulmonary nodules, Thorax 2015;70 Suppl 2:ii1-ii54)")
BROCK_2013 = ("Brock University / PanCan model, full model with spiculation (McWilliams A et al., Probability of "
              "Cancer in Pulmonary Nodules Detected on First Screening CT, N Engl J Med 2013;369(10):910-919)")

LUNG_RADS_TABLE = f"{LUNG_RADS_V2022}, Assessment Categories table"
FLEISCHNER_SOLID_TABLE = f"{FLEISCHNER_2017}, Table 1A (solid nodules)"
FLEISCHNER_SUBSOLID_TABLE = f"{FLEISCHNER_2017}, Table 1B (subsolid nodules)"
FLEISCHNER_SCOPE = f"{FLEISCHNER_2017}, scope (not for screening, age < 35, known cancer or immunosuppression)"
# Judgement: the algorithm numbers below are as I know the BTS 2015 supplement (Algorithm 1 initial approach to
# solid nodules, 2 CT surveillance of solid nodules, 3 PET-CT and the Herder model, 4 subsolid nodules); the
# searchable secondary sources confirmed the thresholds, not the figure numbers.
BTS_ALGORITHM_1 = f"{BTS_2015}, Algorithm 1 (initial approach to solid nodules)"
BTS_ALGORITHM_2 = f"{BTS_2015}, Algorithm 2 (CT surveillance of solid nodules)"
BTS_ALGORITHM_3 = f"{BTS_2015}, Algorithm 3 (PET-CT and the Herder model)"
BTS_ALGORITHM_4 = f"{BTS_2015}, Algorithm 4 (subsolid nodules)"
BTS_BENIGN = f"{BTS_2015}, recommendations on initial assessment (benign features: no follow-up)"

LUNG_RADS, FLEISCHNER, BTS = "Lung-RADS v2022", "Fleischner 2017", "BTS 2015"


# --- the rule table --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One row of a published table: what it covers (finding), what it recommends, and where it says so."""

    guideline: str  # LUNG_RADS, FLEISCHNER or BTS
    key: str  # unique over RULES, e.g. "lung-rads/4A", "fleischner/solid/single/6-8/low", "bts/solid/<5"
    finding: str
    recommendation: str
    citation: str


_LR_4B_MANAGEMENT = ("Referral for further clinical evaluation: diagnostic chest CT with or without contrast; PET/CT "
                     "may be considered if there is a solid nodule or solid component of 8 mm or more (>= 268 mm3); "
                     "tissue sampling; and/or referral for further clinical evaluation. Management depends on "
                     "clinical evaluation, patient preference and probability of malignancy.")

_LUNG_RADS_ROWS = (
    ("1", "Negative: no lung nodules, or nodules with specific calcifications (complete, central, popcorn, "
          "concentric rings) or fat", "12-month screening LDCT."),
    ("2", "Benign appearance or behaviour: solid < 6 mm at baseline or new < 4 mm; part-solid < 6 mm total at "
          "baseline; non-solid < 30 mm, or >= 30 mm stable or slowly growing; juxtapleural solid < 10 mm (smooth, "
          "oval/lentiform/triangular); category 3 stable or decreased at 6-month follow-up",
     "12-month screening LDCT."),
    ("3", "Probably benign: solid 6 to < 8 mm at baseline or new 4 to < 6 mm; part-solid >= 6 mm total with solid "
          "component < 6 mm at baseline, or new < 6 mm total; non-solid >= 30 mm at baseline or new; category 4A "
          "stable or decreased at 3-month follow-up", "6-month LDCT."),
    ("4A", "Suspicious: solid 8 to < 15 mm at baseline, growing < 8 mm, or new 6 to < 8 mm; part-solid >= 6 mm "
           "with solid component 6 to < 8 mm at baseline, or with a new or growing solid component < 4 mm",
     "3-month LDCT; PET/CT may be considered if there is a solid nodule or solid component of 8 mm or more "
     "(>= 268 mm3)."),
    ("4B", "Very suspicious: solid >= 15 mm at baseline, or new or growing >= 8 mm; part-solid with solid "
           "component >= 8 mm at baseline, or a new or growing solid component >= 4 mm", _LR_4B_MANAGEMENT),
    ("4X", "Very suspicious: category 3 or 4 nodule with additional features or imaging findings that increase the "
           "suspicion for lung cancer (e.g. spiculation)", _LR_4B_MANAGEMENT),
)

_FS_SOLID = (
    # (multiplicity, size class, risk, recommendation)
    ("single", "<6", "low", "No routine follow-up."),
    ("single", "<6", "high", "Optional CT at 12 months."),
    ("single", "6-8", "low", "CT at 6-12 months, then consider CT at 18-24 months."),
    ("single", "6-8", "high", "CT at 6-12 months, then CT at 18-24 months."),
    ("single", ">8", "low", "Consider CT at 3 months, PET/CT, or tissue sampling."),
    ("single", ">8", "high", "Consider CT at 3 months, PET/CT, or tissue sampling."),
    ("multiple", "<6", "low", "No routine follow-up."),
    ("multiple", "<6", "high", "Optional CT at 12 months."),
    ("multiple", "6-8", "low", "CT at 3-6 months, then consider CT at 18-24 months."),
    ("multiple", "6-8", "high", "CT at 3-6 months, then at 18-24 months."),
    ("multiple", ">8", "low", "CT at 3-6 months, then consider CT at 18-24 months."),
    ("multiple", ">8", "high", "CT at 3-6 months, then at 18-24 months."),
)
_FS_SOLID_SIZE = {"<6": "< 6 mm (< 100 mm3)", "6-8": "6-8 mm (100-250 mm3)", ">8": "> 8 mm (> 250 mm3)"}

_FS_SUBSOLID = (
    # (key part, finding, recommendation)
    ("ground_glass/single/<6", "single ground-glass nodule < 6 mm (< 100 mm3)", "No routine follow-up."),
    ("ground_glass/single/>=6", "single ground-glass nodule >= 6 mm (>= 100 mm3)",
     "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years."),
    ("part_solid/single/<6", "single part-solid nodule < 6 mm (< 100 mm3)", "No routine follow-up."),
    ("part_solid/single/>=6", "single part-solid nodule >= 6 mm (>= 100 mm3)",
     "CT at 3-6 months to confirm persistence. If unchanged and solid component remains < 6 mm, annual CT should "
     "be performed for 5 years."),
    ("subsolid/multiple/<6", "multiple subsolid nodules, largest < 6 mm (< 100 mm3)",
     "CT at 3-6 months. If stable, consider CT at 2 and 4 years."),
    ("subsolid/multiple/>=6", "multiple subsolid nodules, largest >= 6 mm (>= 100 mm3)",
     "CT at 3-6 months. Subsequent management based on the most suspicious nodule(s)."),
)

_BTS_SURVEILLANCE = ("CT surveillance: CT at 3 months and at 1 year; with volumetry, discharge if stable at 1 year; "
                     "where only diameter can be measured, CT also at 2 years. Growth: further assessment by "
                     "volume-doubling time per the algorithm.")
_BTS_ROWS = (
    ("bts/benign", "nodule with benign features: diffuse, central, laminated or popcorn calcification, macroscopic "
                   "fat, or a typical perifissural/subpleural nodule", "No follow-up.", BTS_BENIGN),
    ("bts/solid/<5", "solid nodule < 5 mm maximum diameter or < 80 mm3", "No follow-up.", BTS_ALGORITHM_1),
    ("bts/solid/5-6", "solid nodule 5 to < 6 mm maximum diameter (no volumetry)",
     "CT surveillance: a single CT at 1 year; with volumetry discharge if stable, if only diameter is available "
     "CT also at 2 years.", BTS_ALGORITHM_2),
    ("bts/solid/6-8", "solid nodule 6 to < 8 mm maximum diameter, or 80 to < 300 mm3", _BTS_SURVEILLANCE,
     BTS_ALGORITHM_2),
    ("bts/solid/>=8/brock<10", "solid nodule >= 8 mm or >= 300 mm3 with Brock risk < 10%", _BTS_SURVEILLANCE,
     BTS_ALGORITHM_1),
    ("bts/solid/>=8/brock>=10", "solid nodule >= 8 mm or >= 300 mm3 with Brock risk >= 10%",
     "PET-CT (if the nodule is above the local PET-CT detection threshold), then risk by the Herder model: "
     "< 10% CT surveillance; 10-70% consider image-guided biopsy; > 70% consider excision or non-surgical "
     "treatment.", BTS_ALGORITHM_3),
    ("bts/subsolid/<5", "subsolid nodule < 5 mm", "No follow-up.", BTS_ALGORITHM_4),
    ("bts/subsolid/>=5", "subsolid nodule >= 5 mm, first seen", "CT at 3 months to confirm persistence.",
     BTS_ALGORITHM_4),
    ("bts/subsolid/resolved", "subsolid nodule resolved at the 3-month CT", "Discharge.", BTS_ALGORITHM_4),
    ("bts/subsolid/grown", "subsolid nodule grown or changed in morphology (e.g. new or larger solid component)",
     "Consider resection or non-surgical treatment (observation if the patient prefers or is unfit).",
     BTS_ALGORITHM_4),
    ("bts/subsolid/persistent/brock<10", "persistent, stable subsolid nodule with Brock risk < 10%",
     "CT surveillance at 1, 2 and 4 years from baseline.", BTS_ALGORITHM_4),
    ("bts/subsolid/persistent/brock>=10", "persistent, stable subsolid nodule with Brock risk >= 10% (or concerning "
                                          "morphology)",
     "Consider observation, image-guided biopsy, resection or non-surgical treatment, taking patient preference "
     "into account.", BTS_ALGORITHM_4),
)


def _build_rules() -> tuple[Rule, ...]:
    rows = [Rule(LUNG_RADS, f"lung-rads/{cat}", finding, management, f"{LUNG_RADS_TABLE}, category {cat}")
            for cat, finding, management in _LUNG_RADS_ROWS]
    for mult, size, risk, text in _FS_SOLID:
        finding = f"{mult} solid nodule(s) {_FS_SOLID_SIZE[size]}, {risk}-risk patient"
        rows.append(Rule(FLEISCHNER, f"fleischner/solid/{mult}/{size}/{risk}", finding, text,
                         f"{FLEISCHNER_SOLID_TABLE}, {mult}, {_FS_SOLID_SIZE[size]}, {risk} risk"))
    for key, finding, text in _FS_SUBSOLID:
        rows.append(Rule(FLEISCHNER, f"fleischner/{key}", finding, text, f"{FLEISCHNER_SUBSOLID_TABLE}, {finding}"))
    rows.append(Rule(FLEISCHNER, "fleischner/not-applicable",
                     "screening CT, age < 35, known primary cancer, or immunocompromised patient",
                     "The Fleischner Society 2017 guidelines do not apply; manage outside them (screening CT: "
                     "ACR Lung-RADS).", FLEISCHNER_SCOPE))
    rows += [Rule(BTS, key, finding, text, citation) for key, finding, text, citation in _BTS_ROWS]
    return tuple(rows)


RULES: tuple[Rule, ...] = _build_rules()
RULES_BY_KEY: MappingProxyType[str, Rule] = MappingProxyType({r.key: r for r in RULES})
if len(RULES_BY_KEY) != len(RULES):  # pragma: no cover - a typo in the tables above
    raise RuntimeError("duplicate rule keys in workbench.runtime.guidelines.RULES")


def rule(key: str) -> Rule:
    """The row ``key`` of ``RULES``; an unknown key is a refusal naming it."""
    try:
        return RULES_BY_KEY[key]
    except KeyError:
        raise WorkbenchError(f"no guideline rule {key!r}") from None


# --- shared input checks ---------------------------------------------------------------------------------------

SOLID, PART_SOLID, NON_SOLID = "solid", "part_solid", "non_solid"  # the cohort's spelling (spec.NODULE_TYPES)
_TYPE_ALIASES = {
    "solid": SOLID,
    "part_solid": PART_SOLID, "partsolid": PART_SOLID, "semi_solid": PART_SOLID, "semisolid": PART_SOLID,
    "mixed": PART_SOLID,
    "non_solid": NON_SOLID, "nonsolid": NON_SOLID, "ground_glass": NON_SOLID, "groundglass": NON_SOLID,
    "pure_ground_glass": NON_SOLID, "ggn": NON_SOLID, "ggo": NON_SOLID,
}


def nodule_type_of(value: object) -> str:
    """``solid``, ``part_solid`` or ``non_solid`` (ground-glass) from common spellings; anything else is refused,
    including "subsolid", which could be either of the last two."""
    key = value.strip().lower().replace("-", "_").replace(" ", "_") if isinstance(value, str) else None
    if key not in _TYPE_ALIASES:
        raise WorkbenchError(f"nodule type {value!r}: expected solid, part_solid or non_solid (ground-glass)")
    return _TYPE_ALIASES[key]


def _number(name: str, value: object, *, unit: str = "mm", allow_zero: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0
            or (value == 0 and not allow_zero)):
        bound = "non-negative" if allow_zero else "positive"
        shown = f"{value!r} {unit}" if unit else repr(value)
        raise WorkbenchError(f"{name} {shown}: expected a {bound} finite number")
    return float(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise WorkbenchError(f"{name} {value!r}: expected True or False")
    return value


def _half_up(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def _decimal(x: float) -> Decimal:
    # repr gives the shortest decimal that round-trips, so 5.9 is 5.9 (not 5.9000000000000003552...).
    return Decimal(repr(float(x)))


def _axes(long_axis_mm: object, short_axis_mm: object, what: str) -> tuple[float, float]:
    long_mm = _number(f"{what} long axis", long_axis_mm)
    short_mm = long_mm if short_axis_mm is None else _number(f"{what} short axis", short_axis_mm)
    if short_mm > long_mm:
        raise WorkbenchError(f"{what} short axis {short_mm:g} mm exceeds its long axis {long_mm:g} mm")
    return long_mm, short_mm


# --- ACR Lung-RADS v2022 ---------------------------------------------------------------------------------------

LUNG_RADS_CATEGORIES = ("1", "2", "3", "4A", "4B", "4X")
LUNG_RADS_STATUSES = ("baseline", "new", "growing", "slow_growing", "stable")
LUNG_RADS_GROWTH_MM = 1.5  # growth: mean diameter up by MORE than 1.5 mm within 12 months


@dataclass(frozen=True)
class LungRadsResult:
    """A Lung-RADS category, its management, the table row it came from, and why (sizes as Lung-RADS reports)."""

    category: str  # one of LUNG_RADS_CATEGORIES
    management: str
    citation: str
    mean_diameter_mm: float | None  # None when category 1 was given by benign calcification or fat
    solid_mean_diameter_mm: float | None  # part-solid only
    reason: str


def lung_rads_mean_diameter(long_axis_mm: float, short_axis_mm: float | None = None) -> float:
    """Lung-RADS mean diameter: both axes measured to one decimal, their mean reported to one decimal.

    Rounding is half up (5.95 -> 6.0), as a radiologist rounds; Python's round() would give 5.9 for some of these
    (binary floats and round-half-even), and 5.9 vs 6.0 is the category 2/3 boundary. A single measurement is taken
    as both axes (a round nodule). v2022 lets the axes be measured in any plane; this function does not care."""
    long_mm, short_mm = _axes(long_axis_mm, short_axis_mm, "nodule")
    a, b = _half_up(_decimal(long_mm), "0.1"), _half_up(_decimal(short_mm), "0.1")
    return float(_half_up((a + b) / 2, "0.1"))


def lung_rads_growth(prior_mean_mm: float, current_mean_mm: float, months_between: float) -> str:
    """``"growing"`` when the mean diameter rose by more than 1.5 mm within a 12-month interval, else ``"stable"``.

    Lung-RADS v2022 defines growth only within 12 months; a longer interval is refused rather than guessed (slow
    growth over several screens is its own status, ``"slow_growing"``)."""
    prior = _number("prior mean diameter", prior_mean_mm)
    current = _number("current mean diameter", current_mean_mm)
    months = _number("interval", months_between, unit="months")
    if months > 12:
        raise WorkbenchError(f"interval {months_between!r} months: Lung-RADS growth is defined within 12 months")
    # Decimal: 6.5 - 5.0 must be exactly 1.5 (not growth), whatever the binary floats say.
    return "growing" if _decimal(current) - _decimal(prior) > Decimal("1.5") else "stable"


def _lr_baseline(kind: str, mean: float, solid: float | None) -> tuple[str, str]:
    """Category by size alone, as at a baseline screen (also used for the size-threshold-crossing rule)."""
    if kind == SOLID:
        if mean < 6:
            return "2", "solid nodule < 6 mm at baseline"
        if mean < 8:
            return "3", "solid nodule 6 to < 8 mm at baseline"
        if mean < 15:
            return "4A", "solid nodule 8 to < 15 mm at baseline"
        return "4B", "solid nodule >= 15 mm at baseline"
    if kind == PART_SOLID:
        assert solid is not None
        if mean < 6:
            return "2", "part-solid nodule < 6 mm total mean diameter at baseline"
        if solid < 6:
            return "3", "part-solid nodule >= 6 mm total with solid component < 6 mm at baseline"
        if solid < 8:
            return "4A", "part-solid nodule with solid component 6 to < 8 mm at baseline"
        return "4B", "part-solid nodule with solid component >= 8 mm at baseline"
    if mean < 30:
        return "2", "non-solid nodule < 30 mm"
    return "3", "non-solid nodule >= 30 mm at baseline or new"


def _order(category: str) -> int:
    return LUNG_RADS_CATEGORIES.index(category)


def lung_rads(
    long_axis_mm: float | None = None,
    short_axis_mm: float | None = None,
    *,
    nodule_type: str = SOLID,
    solid_long_axis_mm: float | None = None,
    solid_short_axis_mm: float | None = None,
    status: str = "baseline",
    prior_category: str | None = None,
    prior_mean_mm: float | None = None,
    prior_solid_mean_mm: float | None = None,
    suspicious_features: bool = False,
    benign_calcification_or_fat: bool = False,
    juxtapleural: bool = False,
) -> LungRadsResult:
    """ACR Lung-RADS v2022 category of one (the most suspicious) nodule on a screening LDCT.

    ``status``: ``baseline`` (first screen), ``new`` (absent before), ``growing`` (mean diameter up > 1.5 mm within
    12 months; see ``lung_rads_growth``; for part-solid nodules, a new or growing solid component),
    ``slow_growing`` (growth over several screens that never meets the 12-month definition), or ``stable``
    (unchanged or smaller; give ``prior_category`` for the v2022 stepped management, and ``prior_mean_mm`` /
    ``prior_solid_mean_mm`` to apply the rule that a nodule crossing a size threshold is re-classified by size).
    Part-solid nodules need the solid component's axes. ``suspicious_features`` (e.g. spiculation) turns a category
    3 or 4 into 4X; ``juxtapleural`` means a solid juxtapleural nodule with smooth margins and an oval, lentiform or
    triangular shape. Not covered: category 0 (incomplete/infectious), airway nodules, atypical cysts, volumes.
    """
    if _flag("benign_calcification_or_fat", benign_calcification_or_fat):
        return _lr_result("1", None, None, "nodule with benign calcification (complete, central, popcorn, "
                                           "concentric rings) or fat")
    kind = nodule_type_of(nodule_type)
    if status not in LUNG_RADS_STATUSES:
        raise WorkbenchError(f"Lung-RADS status {status!r}: expected one of {', '.join(LUNG_RADS_STATUSES)}")
    if prior_category is not None and prior_category not in ("2", "3", "4A", "4B", "4X"):
        raise WorkbenchError(f"prior Lung-RADS category {prior_category!r}: expected 2, 3, 4A, 4B or 4X")
    if long_axis_mm is None:
        raise WorkbenchError("Lung-RADS needs the nodule's long axis (mm)")
    mean = lung_rads_mean_diameter(long_axis_mm, short_axis_mm)
    solid: float | None = None
    if kind == PART_SOLID:
        if solid_long_axis_mm is None:
            raise WorkbenchError("a part-solid nodule needs its solid component's long axis (solid_long_axis_mm)")
        solid = lung_rads_mean_diameter(solid_long_axis_mm, solid_short_axis_mm)
        if solid > mean:
            raise WorkbenchError(f"solid component {solid:g} mm exceeds the part-solid nodule's mean diameter "
                                 f"{mean:g} mm")
    elif solid_long_axis_mm is not None or solid_short_axis_mm is not None:
        raise WorkbenchError(f"a solid component was given for a {kind} nodule; only part-solid nodules have one")
    suspicious = _flag("suspicious_features", suspicious_features)

    category, reason = _lr_category(kind, mean, solid, status, prior_category, prior_mean_mm, prior_solid_mean_mm,
                                    _flag("juxtapleural", juxtapleural))
    if suspicious and category in ("3", "4A", "4B"):
        category, reason = "4X", f"{reason}, with additional features that increase the suspicion for lung cancer"
    return _lr_result(category, mean, solid, reason)


def _lr_category(kind: str, mean: float, solid: float | None, status: str, prior_category: str | None,
                 prior_mean_mm: float | None, prior_solid_mean_mm: float | None, juxtapleural: bool) -> tuple[str, str]:
    if juxtapleural:
        if kind != SOLID:
            raise WorkbenchError(f"juxtapleural: the Lung-RADS juxtapleural rule is for solid nodules, not {kind}")
        if mean < 10 and status in ("baseline", "new"):
            return "2", "juxtapleural solid nodule < 10 mm (smooth, oval/lentiform/triangular), baseline or new"
    if kind == NON_SOLID:
        if mean < 30:
            return "2", f"non-solid nodule < 30 mm ({status})"
        if status in ("stable", "slow_growing"):
            if prior_mean_mm is not None and _number("prior mean diameter", prior_mean_mm) < 30:
                return "3", "non-solid nodule that has crossed the 30 mm threshold (re-classified by size)"
            return "2", "non-solid nodule >= 30 mm, stable or slowly growing"
        if status == "growing":
            # Judgement: the table lists >= 30 mm only at baseline/new (3) and stable/slowly growing (2); a growing
            # one is kept at 3, as a nodule that enlarges into a size category is classified by size.
            return "3", "growing non-solid nodule >= 30 mm"
        return "3", f"non-solid nodule >= 30 mm ({status})"
    if status == "baseline":
        return _lr_baseline(kind, mean, solid)
    if status == "slow_growing":
        # v2022: solid or part-solid nodules growing over multiple screens without meeting the 12-month growth
        # definition are suspicious (4B). Judgement: taken from the v2022 notes as summarised in secondary sources.
        return "4B", f"slowly growing {kind.replace('_', '-')} nodule over multiple screening exams"
    if kind == SOLID:
        if status == "new":
            if mean < 4:
                return "2", "new solid nodule < 4 mm"
            if mean < 6:
                return "3", "new solid nodule 4 to < 6 mm"
            if mean < 8:
                return "4A", "new solid nodule 6 to < 8 mm"
            return "4B", "new solid nodule >= 8 mm"
        if status == "growing":
            return ("4A", "growing solid nodule < 8 mm") if mean < 8 else ("4B", "growing solid nodule >= 8 mm")
    if kind == PART_SOLID and status in ("new", "growing"):
        assert solid is not None
        if status == "new" and mean < 6:
            # Judgement: "new < 6 mm total" (3) is read before the new-solid-component rows (4A/4B), as the table
            # lists it; a new part-solid nodule that small rarely has a measurable solid component.
            return "3", "new part-solid nodule < 6 mm total mean diameter"
        if solid < 4:
            return "4A", f"part-solid nodule with a {status} solid component < 4 mm"
        return "4B", f"part-solid nodule with a {status} solid component >= 4 mm"
    return _lr_stable(kind, mean, solid, prior_category, prior_mean_mm, prior_solid_mean_mm)


def _lr_stable(kind: str, mean: float, solid: float | None, prior_category: str | None,
               prior_mean_mm: float | None, prior_solid_mean_mm: float | None) -> tuple[str, str]:
    """v2022 stepped management for a stable (or smaller) solid/part-solid nodule, unless it crossed a threshold."""
    by_size, size_reason = _lr_baseline(kind, mean, solid)
    if prior_mean_mm is not None:
        prior_solid = None
        if kind == PART_SOLID:
            if prior_solid_mean_mm is None:
                raise WorkbenchError("a stable part-solid nodule given prior_mean_mm also needs prior_solid_mean_mm")
            prior_solid = _number("prior solid component mean diameter", prior_solid_mean_mm)
        prior_by_size, _ = _lr_baseline(kind, _number("prior mean diameter", prior_mean_mm), prior_solid)
        if _order(by_size) > _order(prior_by_size):
            return by_size, f"{size_reason} (crossed a size threshold without meeting the growth definition)"
    if prior_category == "4A":
        return "3", "category 4A nodule stable or decreased at 3-month follow-up"
    if prior_category == "3":
        return "2", "category 3 nodule stable or decreased at 6-month follow-up"
    if prior_category in ("4B", "4X"):
        # A 4B nodule returns to 2 only when proven benign after work-up; stability alone does not step it down.
        return "4B", "stable category 4B nodule: work-up continues (only a proven benign aetiology returns it to 2)"
    return "2", "stable solid or part-solid nodule, not on short-interval follow-up"


def _lr_result(category: str, mean: float | None, solid: float | None, reason: str) -> LungRadsResult:
    r = rule(f"lung-rads/{category}")
    return LungRadsResult(category=category, management=r.recommendation, citation=r.citation,
                          mean_diameter_mm=mean, solid_mean_diameter_mm=solid, reason=reason)


# --- Fleischner Society 2017 -----------------------------------------------------------------------------------

FLEISCHNER_MIN_AGE = 35


@dataclass(frozen=True)
class FleischnerResult:
    """A Fleischner 2017 recommendation, or ``applies=False`` with the reasons the guideline does not apply."""

    applies: bool
    recommendation: str
    citation: str
    key: str  # the RULES row
    size_mm: int | None  # average of long and short axis, rounded to the nearest mm (None when sized by volume)
    size_class: str | None  # "<6", "6-8", ">8" (solid) or "<6", ">=6" (subsolid); None when not applicable
    not_applicable_because: tuple[str, ...] = ()


def fleischner_size_mm(long_axis_mm: float, short_axis_mm: float | None = None) -> int:
    """Fleischner size: the average of long and short axis, rounded to the nearest millimetre (5.5 -> 6, 8.5 -> 9).

    Half up, as the paper rounds; Python's round() is half-even and would put 8.5 mm in 6-8 instead of > 8."""
    long_mm, short_mm = _axes(long_axis_mm, short_axis_mm, "nodule")
    return int(_half_up((_decimal(long_mm) + _decimal(short_mm)) / 2, "1"))


def fleischner(
    long_axis_mm: float | None = None,
    short_axis_mm: float | None = None,
    *,
    nodule_type: str = SOLID,
    volume_mm3: float | None = None,
    multiple: bool = False,
    high_risk: bool = False,
    age: float | None = None,
    screening: bool = False,
    immunocompromised: bool = False,
    known_cancer: bool = False,
) -> FleischnerResult:
    """Fleischner Society 2017 recommendation for an incidental nodule (the largest/most suspicious if several).

    Size by axes (average, rounded to the nearest mm) or by ``volume_mm3`` (solid < 100, 100-250, > 250 mm3;
    subsolid < 100, >= 100), not both. ``high_risk``: the patient's risk per the guideline (e.g. heavy smoking,
    older age, suspicious morphology, upper lobe). The guideline does not apply to screening, age < 35,
    immunocompromised patients or patients with known cancer: then ``applies`` is False and the reasons are named.
    """
    kind = nodule_type_of(nodule_type)
    multiple, high_risk = _flag("multiple", multiple), _flag("high_risk", high_risk)
    reasons = []
    if age is not None and _number("age", age, unit="years") < FLEISCHNER_MIN_AGE:
        reasons.append(f"age {age:g} < {FLEISCHNER_MIN_AGE}")
    for name, value, reason in (("screening", screening, "lung cancer screening examination"),
                                ("immunocompromised", immunocompromised, "immunocompromised patient"),
                                ("known_cancer", known_cancer, "known primary cancer (risk of metastases)")):
        if _flag(name, value):
            reasons.append(reason)

    size_mm: int | None = None
    if (long_axis_mm is None) == (volume_mm3 is None):
        raise WorkbenchError("Fleischner: give the nodule's axes (long_axis_mm, short_axis_mm) or volume_mm3, "
                             "exactly one of them")
    if volume_mm3 is not None:
        volume = _number("nodule volume", volume_mm3, unit="mm3")
        # Judgement: the table writes 6-8 mm as 100-250 mm3 and subsolid >= 6 mm as "> 100 mm3"; exactly 100 mm3 is
        # put with 6 mm in both, so that solid and subsolid share one boundary.
        small, large = volume < 100, volume > 250
    else:
        assert long_axis_mm is not None  # exactly one of axes and volume, checked above
        size_mm = fleischner_size_mm(long_axis_mm, short_axis_mm)
        small, large = size_mm < 6, size_mm > 8
    if reasons:
        r = rule("fleischner/not-applicable")
        text = f"The Fleischner Society 2017 guidelines do not apply ({'; '.join(reasons)}). {r.recommendation}"
        return FleischnerResult(False, text, r.citation, r.key, size_mm, None, tuple(reasons))

    if kind == SOLID:
        size_class = "<6" if small else (">8" if large else "6-8")
        key = f"fleischner/solid/{'multiple' if multiple else 'single'}/{size_class}/{'high' if high_risk else 'low'}"
    else:
        size_class = "<6" if small else ">=6"
        prefix = "subsolid/multiple" if multiple else f"{'ground_glass' if kind == NON_SOLID else kind}/single"
        key = f"fleischner/{prefix}/{size_class}"
    r = rule(key)
    return FleischnerResult(True, r.recommendation, r.citation, r.key, size_mm, size_class)


# --- British Thoracic Society 2015 -----------------------------------------------------------------------------

BTS_BROCK_THRESHOLD = 0.10
BTS_SUBSOLID_FOLLOW_UP = ("resolved", "persistent", "grown")


@dataclass(frozen=True)
class BtsResult:
    """A BTS 2015 pathway step: the recommendation, its algorithm, and the row key."""

    recommendation: str
    citation: str
    key: str


def bts(
    diameter_mm: float | None = None,
    *,
    nodule_type: str = SOLID,
    volume_mm3: float | None = None,
    brock_probability: float | None = None,
    benign_features: bool = False,
    three_month_ct: str | None = None,
) -> BtsResult:
    """British Thoracic Society 2015 pathway for one nodule.

    Solid: ``diameter_mm`` is the maximum diameter (BTS uses it where volumetry is unavailable), or give
    ``volume_mm3`` (preferred by BTS), not both. < 5 mm / < 80 mm3: no follow-up; 5 to < 6 mm: CT at 1 year;
    6 to < 8 mm / 80 to < 300 mm3: CT at 3 months and 1 year; >= 8 mm / >= 300 mm3: the Brock risk decides
    (``brock_probability``, e.g. from ``brock_risk``): < 10% CT surveillance, >= 10% PET-CT. Subsolid (part-solid or
    ground-glass): < 5 mm no follow-up, else CT at 3 months; ``three_month_ct`` (resolved / persistent / grown)
    takes the next step, a persistent one by Brock risk. The initial step only: volume-doubling-time arms of the
    surveillance algorithm are not modelled.
    """
    if _flag("benign_features", benign_features):
        return _bts_result("bts/benign")
    kind = nodule_type_of(nodule_type)
    if (diameter_mm is None) == (volume_mm3 is None):
        raise WorkbenchError("BTS: give the nodule's diameter_mm or volume_mm3, exactly one of them")
    brock = None
    if brock_probability is not None:
        brock = _number("Brock probability", brock_probability, unit="", allow_zero=True)
        if brock > 1:
            raise WorkbenchError(f"Brock probability {brock_probability!r}: expected a probability in [0, 1]")

    if kind != SOLID:
        if volume_mm3 is not None:
            # Judgement: the BTS subsolid algorithm is written in diameters (5 mm); no volume threshold is assumed.
            raise WorkbenchError(f"BTS subsolid nodules are sized by diameter, not volume ({volume_mm3!r} mm3 given)")
        if three_month_ct is not None and three_month_ct not in BTS_SUBSOLID_FOLLOW_UP:
            raise WorkbenchError(f"three_month_ct {three_month_ct!r}: expected one of "
                                 f"{', '.join(BTS_SUBSOLID_FOLLOW_UP)}")
        if _number("nodule diameter", diameter_mm) < 5:
            return _bts_result("bts/subsolid/<5")
        if three_month_ct is None:
            return _bts_result("bts/subsolid/>=5")
        if three_month_ct != "persistent":
            return _bts_result(f"bts/subsolid/{three_month_ct}")
        if brock is None:
            raise WorkbenchError("BTS: a persistent subsolid nodule needs its Brock probability (brock_probability)")
        return _bts_result(f"bts/subsolid/persistent/{_brock_band(brock)}")

    if three_month_ct is not None:
        raise WorkbenchError(f"three_month_ct {three_month_ct!r}: only the BTS subsolid pathway takes it")
    if volume_mm3 is not None:
        volume = _number("nodule volume", volume_mm3, unit="mm3")
        band = "<5" if volume < 80 else ("6-8" if volume < 300 else ">=8")
    else:
        d = _number("nodule diameter", diameter_mm)
        band = "<5" if d < 5 else ("5-6" if d < 6 else ("6-8" if d < 8 else ">=8"))
    if band != ">=8":
        return _bts_result(f"bts/solid/{band}")
    if brock is None:
        raise WorkbenchError("BTS: a solid nodule >= 8 mm (>= 300 mm3) needs its Brock probability "
                             "(brock_probability)")
    return _bts_result(f"bts/solid/>=8/{_brock_band(brock)}")


def _brock_band(p: float) -> str:
    # Judgement: the BTS text says "< 10%" for surveillance and "> 10%" for PET-CT; exactly 10% goes to PET-CT, the
    # cautious side, as the algorithm figure's ">= 10%" reads.
    return "brock<10" if p < BTS_BROCK_THRESHOLD else "brock>=10"


def _bts_result(key: str) -> BtsResult:
    r = rule(key)
    return BtsResult(r.recommendation, r.citation, r.key)


# --- Brock University / PanCan model ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BrockCoefficients:
    """Log-odds coefficients of the full model with spiculation, and the centring the paper applies to its inputs."""

    intercept: float = -6.7892
    age: float = 0.0287  # per year, times (age - 62)
    female: float = 0.6011
    family_history: float = 0.2961  # of lung cancer
    emphysema: float = 0.2953
    size: float = -5.3854  # times ((diameter / 10) ** -0.5 - 1.58113883)
    part_solid: float = 0.377
    non_solid: float = -0.1276  # ground-glass; solid is the reference
    upper_lobe: float = 0.6581
    nodule_count: float = -0.0824  # per nodule, times (count - 4)
    spiculation: float = 0.7729
    age_centre: float = 62.0
    # (4 / 10) ** -0.5 = sqrt(2.5), to the paper's 8 decimals: the size term is centred on a 4 mm nodule.
    size_centre_term: float = 1.58113883
    count_centre: float = 4.0


BROCK = BrockCoefficients()


def brock_size_term(diameter_mm: float) -> float:
    """The published nonlinear size transform, (diameter / 10) ** -0.5 - 1.58113883 (zero at 4 mm)."""
    d = _number("nodule diameter", diameter_mm)
    return (d / 10.0) ** -0.5 - BROCK.size_centre_term


def brock_logit(
    *,
    age: float,
    female: bool,
    family_history: bool,
    emphysema: bool,
    diameter_mm: float,
    nodule_type: str,
    upper_lobe: bool,
    nodule_count: int,
    spiculated: bool,
) -> float:
    """Log-odds of malignancy under the Brock full model with spiculation (see ``brock_risk``)."""
    a = _number("age", age, unit="years")
    kind = nodule_type_of(nodule_type)
    if isinstance(nodule_count, bool) or not isinstance(nodule_count, int) or nodule_count < 1:
        raise WorkbenchError(f"nodule count {nodule_count!r}: expected a whole number >= 1 (nodules on the scan)")
    c = BROCK
    return (c.intercept
            + c.age * (a - c.age_centre)
            + c.female * _flag("female", female)
            + c.family_history * _flag("family_history", family_history)
            + c.emphysema * _flag("emphysema", emphysema)
            + c.size * brock_size_term(diameter_mm)
            + c.part_solid * (kind == PART_SOLID)
            + c.non_solid * (kind == NON_SOLID)
            + c.upper_lobe * _flag("upper_lobe", upper_lobe)
            + c.nodule_count * (nodule_count - c.count_centre)
            + c.spiculation * _flag("spiculated", spiculated))


def brock_risk(
    *,
    age: float,
    female: bool,
    family_history: bool,
    emphysema: bool,
    diameter_mm: float,
    nodule_type: str,
    upper_lobe: bool,
    nodule_count: int,
    spiculated: bool,
) -> float:
    """Probability of malignancy, Brock University / PanCan full model with spiculation (McWilliams et al. 2013).

    Implemented from the paper's coefficients (``BrockCoefficients``), independently of the cohort generator's copy.
    Inputs as the model defines them: age in years (centred at 62), family history of lung cancer, emphysema on CT,
    nodule diameter in mm (the calculators take the largest diameter; the model was fitted on screen-detected nodules
    of any size at baseline), nodule type (solid, part-solid, non-solid/ground-glass), upper-lobe location (the
    lingula counts with the left upper lobe), total nodule count on the scan (centred at 4), spiculation.
    """
    z = brock_logit(age=age, female=female, family_history=family_history, emphysema=emphysema,
                    diameter_mm=diameter_mm, nodule_type=nodule_type, upper_lobe=upper_lobe,
                    nodule_count=nodule_count, spiculated=spiculated)
    return 1.0 / (1.0 + math.exp(-z))
