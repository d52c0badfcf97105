"""The patient facts the nodule guidelines need, read from a de-identified note by rules a reader can check.

Fleischner wants the patient's risk and whether a cancer is known; Brock wants age, sex, family history of lung
cancer and emphysema; Lung-RADS wants to know whether a prior CT showed the nodule stable or growing. Notes state
these in many ways ("66 yo F", "ex-smoker, 1 ppd x 30 yrs", "FHx: noncontributory", "his mother had lung cancer").

Why rules and not the note reader's neural heads: a radiologist signing the card must see *why* the card says
"family history of lung cancer: yes". Every fact comes with the words of the note it was read from
(``NoteFacts.evidence``); a fact the note does not state stays ``None`` and the card says it was assumed. The rules
are measured against the synthetic cohort's recorded facts in ``tests/runtime/test_note_facts.py``. They are
written for English clinical notes of the kinds the workbench has seen (structured, narrative, terse, dictated,
letters); an unfamiliar phrasing gives ``None`` (unknown), never a guess.

This module never imports the cohort generator (the runtime reads notes as a hospital would write them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_UNIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
               "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TEN_WORDS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_UNITS = {w: i for i, w in enumerate(_UNIT_WORDS)}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(_TEN_WORDS)}
_SMALL_WORD = (rf"(?:(?:{'|'.join(_TEN_WORDS)})(?:[- ](?:{'|'.join(_UNIT_WORDS[1:10])}))?|"
               rf"{'|'.join(sorted(_UNIT_WORDS, key=len, reverse=True))})")
_NUMBER_WORD = rf"(?:(?:one|a) hundred(?: and)?(?: {_SMALL_WORD})?|{_SMALL_WORD})"
_NUM = rf"(\d+(?:\.\d+)?|{_NUMBER_WORD}(?: and a half)?)"


def number_of(text: str) -> float | None:
    """'61' -> 61, 'sixty-one' -> 61, 'three and a half' -> 3.5, 'half a' -> 0.5; None when not a number."""
    t = text.strip().lower()
    try:
        return float(t)
    except ValueError:
        pass
    half = 0.5 if t.endswith(" and a half") else 0.0
    t = t.removesuffix(" and a half")
    hundred = re.match(r"(?:one|a) hundred(?: and)?(?: (.+))?$", t)
    if hundred:
        rest = number_of(hundred.group(1)) if hundred.group(1) else 0.0
        return None if rest is None else 100.0 + rest + half
    parts = re.split(r"[- ]", t)
    if len(parts) == 1:
        v = _UNITS.get(parts[0], _TENS.get(parts[0]))
    elif len(parts) == 2 and parts[0] in _TENS and parts[1] in _UNITS:
        v = _TENS[parts[0]] + _UNITS[parts[1]]
    else:
        v = None
    return None if v is None else v + half


# --- the rules -------------------------------------------------------------------------------------------------
# Each is (pattern, value); the first pattern that matches decides. Negations come before the positive forms
# they contain ("nonsmoker" before "smoker", "no family history of lung cancer" before "lung cancer").

_I = re.IGNORECASE
_AGE = (re.compile(rf"\b{_NUM}[- ]?(?:years?|yrs?)[- ]old\b", _I), re.compile(r"\b(\d{1,3}) ?(?:yo|y\.o\.|y/o)(?!\w)", _I),
        re.compile(r"\bage[:d]? (\d{1,3})\b", _I),
        re.compile(r"\b(90) or older"))  # the de-identifier's form of an age over 89 (HIPAA safe harbour)
_MALE = r"(?:man|male|gentleman|M)"
_FEMALE = r"(?:woman|female|lady|F)"
_SEX_AFTER_AGE = re.compile(rf"(?:[- ]old|yo|y\.o\.|y/o),? (?:(?P<m>{_MALE})|(?P<f>{_FEMALE}))\b", _I)
_SEX_FIELD = re.compile(r"\bSex: ?(?:(?P<m>M|male)|(?P<f>F|female))\b")
_SEX_TITLE = re.compile(r"\b(?:(?P<m>Mr)|(?P<f>Mrs|Ms))\.? ")

_SMOKING: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, _I), v) for p, v in (
    (r"\b(?:never(?: a)? smoke[dr]|never smoked|non-?smoker|lifelong non-?smoker|denies (?:any )?(?:history of )?"
     r"(?:tobacco|smoking)(?: use)?|no (?:history of )?(?:tobacco|smoking)(?: use| history)?|tob: ?never|no tob hx)\b",
     "never"),
    (r"\b(?:current(?:ly)? smok\w*|curr smoker|active smoker|active tob(?:acco)? use|continues to smoke|still smok\w*|"
     r"is still smoking|smokes \d|smokes (?:half|one|two))\b", "current"),
    (r"\b(?:former smoker|ex-?smoker|fmr smoker|stopped smoking|gave up (?:cigarettes|smoking)|quit smoking|"
     r"smoked .{0,60}? and quit)\b", "former"),
))
_PACK_YEARS = re.compile(rf"\b{_NUM}[- ]?(?:pack[- ]?years?|pack[- ]?yrs?|pk[- ]?yrs?|pkyrs|PY)\b", _I)
_PPD = re.compile(r"\b(\d+(?:\.\d+)?) ?ppd x (\d+) ?(?:yrs?|years)\b", _I)
_PACKS_WORDS = {"half a pack": 0.5, "one pack": 1.0, "one and a half packs": 1.5, "two packs": 2.0}
_PACKS_A_DAY = re.compile(r"\b(half a pack|one pack|one and a half packs|two packs) (?:a|per) day (?:and has done so )?"
                          rf"for {_NUM} years\b", _I)

_LUNG_CA = r"(?:lung (?:cancer|ca|carcinoma|malignancy)|malignancy|lung ca)"
_RELATIVE = (r"(?:mother|father|brother|sister|son|daughter|sibling|parent|aunt|uncle|grandmother|grandfather|"
             r"maternal \w+|paternal \w+)")
_FAMILY: tuple[tuple[re.Pattern[str], bool], ...] = tuple((re.compile(p, _I), v) for p, v in (
    (rf"\b(?:no|denies(?: any)?) (?:family history|family hx|FHx|FH) (?:of |for )?{_LUNG_CA}", False),
    (rf"\b(?:family history|FHx?|FH) (?:is )?(?:negative|neg) for {_LUNG_CA}", False),
    (r"\b(?:FHx?|FH|family history):? ?(?:noncontributory|noncontrib|non-contributory|negative|neg)\b", False),
    (rf"\b(?:family history|FHx?|FH)(?: is)? (?:significant|positive) for {_LUNG_CA}", True),
    (rf"\b(?:family history|FHx?|\+FHx?) (?:of )?{_LUNG_CA}", True),
    (rf"\b(?:FHx?|FH): ?{_RELATIVE} (?:w/|with|had) {_LUNG_CA}", True),
    (rf"\b{_RELATIVE} (?:w/|with|had|has|died of) {_LUNG_CA}", True),
))

_CANCER_WORD = (r"(?:cancer|carcinoma|ca|melanoma|malignancy|lymphoma|sarcoma)")
_PRIOR_CANCER: tuple[tuple[re.Pattern[str], bool], ...] = tuple((re.compile(p, _I), v) for p, v in (
    (r"\b(?:no|denies)(?: prior| personal)?(?: history of| h/o| hx)? (?:prior )?(?:cancer|malignancy|ca)\b", False),
    (r"\bPMH (?:neg|negative) for (?:ca|cancer|malignancy)\b", False),
    (rf"\b(?:history of|hx|h/o|prior|had|previous)(?: \w+){{0,4}}? {_CANCER_WORD}\b", True),
    (rf"\b(?:\w+ )?{_CANCER_WORD} (?:treated with|s/p)\b", True),
    (r"\b(?:hx|h/o|prior) (?:melanoma|renal cell carcinoma|RCC|H&N ca)\b", True),
))

_EMPHYSEMA = re.compile(r"\b(?:centrilobular emphysema|paraseptal emphysema|emphysema|COPD)\b", _I)
_NO_EMPHYSEMA = re.compile(r"\b(?:no|without|denies)(?: \w+){0,2} (?:emphysema|COPD)\b", _I)

_NO_PRIOR_CT = re.compile(r"\b(?:no prior (?:imaging|chest CT|CT|studies|scans?)|no priors(?: available)?)\b", _I)
_INTERVAL = rf"{_NUM} (?:months?|mo|years?|yrs?)(?= ago| prior| earlier)"
_GROWING_CT = re.compile(rf"\b(?:enlarged|grown|growth|increased in size|incr in size)\b[^.;]{{0,40}}?\bCT\b[^.;]{{0,30}}?"
                         rf"{_INTERVAL}", _I)
_STABLE_CT = re.compile(rf"\b(?:stable|unchanged|without change|no change)\b[^.;]{{0,40}}?\bCT\b[^.;]{{0,30}}?"
                        rf"{_INTERVAL}", _I)


@dataclass(frozen=True)
class NoteFacts:
    """What the note states; ``None``: the note does not say (or says it in a way these rules do not read)."""

    age: int | None = None
    female: bool | None = None
    smoking: str | None = None  # "never", "former", "current"
    pack_years: float | None = None
    family_history: bool | None = None  # of lung cancer, in a relative
    prior_cancer: bool | None = None  # the patient's own cancer history (known cancer: Fleischner does not apply)
    emphysema: bool | None = None  # stated in the note (COPD or emphysema); None: not mentioned
    prior_ct: str | None = None  # "none", "stable", "growing"
    prior_ct_months: float | None = None  # how long ago the prior CT was
    evidence: dict[str, str] = field(default_factory=dict)  # fact -> the words of the note it was read from

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("age", "female", "smoking", "pack_years", "family_history",
                                               "prior_cancer", "emphysema", "prior_ct", "prior_ct_months")} | {
            "evidence": dict(self.evidence)}


def _first(rules: tuple[tuple[re.Pattern[str], Any], ...], text: str) -> tuple[Any, str] | None:
    """The value of the earliest match in the text (by position, then by rule order for the same position)."""
    best: tuple[int, int, Any, str] | None = None
    for order, (pattern, value) in enumerate(rules):
        m = pattern.search(text)
        if m and (best is None or (m.start(), order) < best[:2]):
            best = (m.start(), order, value, m.group(0))
    return None if best is None else (best[2], best[3])


def _age(text: str) -> tuple[int, str] | None:
    for pattern in _AGE:
        m = pattern.search(text)
        if m:
            v = number_of(m.group(1))
            if v is not None and 18 <= v <= 110:
                return int(v), m.group(0)
    return None


def _sex(text: str) -> tuple[bool, str] | None:
    for pattern in (_SEX_AFTER_AGE, _SEX_FIELD, _SEX_TITLE):
        m = pattern.search(text)
        if m:
            return m.group("f") is not None, m.group(0).strip()
    she = len(re.findall(r"\b(?:she|her)\b", text, _I))
    he = len(re.findall(r"\b(?:he|his|him)\b", text, _I))
    if max(she, he) >= 2 and min(she, he) == 0:
        return she > 0, f"pronouns ({'she/her' if she else 'he/his'}, {max(she, he)} times)"
    return None


def _pack_years(text: str) -> tuple[float, str] | None:
    m = _PACK_YEARS.search(text)
    if m and (v := number_of(m.group(1))) is not None:
        return v, m.group(0)
    m = _PPD.search(text)
    if m:
        return float(m.group(1)) * float(m.group(2)), m.group(0)
    m = _PACKS_A_DAY.search(text)
    if m and (years := number_of(m.group(2))) is not None:
        return _PACKS_WORDS[m.group(1).lower()] * years, m.group(0)
    return None


def _prior_ct(text: str) -> tuple[str, float | None, str] | None:
    found = []
    for pattern, status in ((_GROWING_CT, "growing"), (_STABLE_CT, "stable")):
        m = pattern.search(text)
        if m:
            found.append((m.start(), status, m))
    if found:
        _, status, m = min(found, key=lambda f: f[0])
        v = number_of(m.group(1))
        unit = m.group(0)[m.end(1) - m.start(0):].strip().lower()
        months = None if v is None else (v if unit.startswith("mo") else 12.0 * v)
        return status, months, m.group(0)
    m = _NO_PRIOR_CT.search(text)
    return ("none", None, m.group(0)) if m else None


def read_note_facts(note: str | None) -> NoteFacts:
    """The facts of one de-identified note (``NoteFacts``), each with the words it was read from."""
    if not note or not note.strip():
        return NoteFacts()
    text = re.sub(r"\s+", " ", note)
    values: dict[str, Any] = {}
    evidence: dict[str, str] = {}

    def keep(name: str, found: tuple[Any, str] | None) -> None:
        if found is not None:
            values[name], evidence[name] = found

    keep("age", _age(text))
    keep("female", _sex(text))
    keep("smoking", _first(_SMOKING, text))
    if values.get("smoking") in ("former", "current"):
        keep("pack_years", _pack_years(text))
    elif values.get("smoking") == "never":
        values["pack_years"] = 0.0
    keep("family_history", _first(_FAMILY, text))
    # the patient's own history: family-history clauses name cancers too, so they are blanked out first
    own = text
    for pattern, _ in _FAMILY:
        own = pattern.sub(" ", own)
    own = re.sub(r"\b(?:family history|FHx?|FH)\b[^.;\n]*", " ", own, flags=_I)
    keep("prior_cancer", _first(_PRIOR_CANCER, own))
    if m := _NO_EMPHYSEMA.search(text):
        keep("emphysema", (False, m.group(0)))
    elif m := _EMPHYSEMA.search(text):
        keep("emphysema", (True, m.group(0)))
    ct = _prior_ct(text)
    if ct is not None:
        values["prior_ct"], values["prior_ct_months"], evidence["prior_ct"] = ct
    return NoteFacts(**values, evidence=evidence)


__all__ = ["NoteFacts", "number_of", "read_note_facts"]
