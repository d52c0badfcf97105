"""Counterfactual note edits: add or remove one published risk factor, and say when the risk moved the wrong way.

Three history facts every published lung-nodule or lung-cancer risk model agrees raise the risk:
- **current smoking**: PLCOm2012 (Tammemagi et al., NEJM 2013: current vs former smoker, plus smoking intensity and
  duration) and the Mayo Clinic model (Swensen et al., Arch Intern Med 1997: ever smoker);
- **family history of lung cancer**: Brock / PanCan (McWilliams et al., NEJM 2013) and PLCOm2012;
- **prior cancer** (a personal history of cancer): PLCOm2012 (personal history of cancer) and Mayo (prior
  extrathoracic cancer); the edit writes an extrathoracic one (below).
Adding one raises the risk, removing it lowers it (``PUBLISHED_DIRECTION``).

The edits work on the note's text alone (nothing here reads the cohort generator): each fact is found by the
phrasing clinical notes use for it (structured, narrative, terse, dictated and letter notes), and rewritten in the
note's own register, with no identifier added, so the edited note is one a clinician could have written:
- ``add smoking``: a never-smoker statement becomes a current smoker with a 30 pack-year history. A former smoker
  is left out (``skip``: ``former smoker``): current-vs-former is PLCOm2012's term but not Mayo's, so the check
  reads current smoking against never;
- ``remove smoking``: a current smoker becomes a never smoker, and the cessation counselling the note records goes
  with it (a never smoker is not counselled to stop);
- ``add family_history``: a negative family history (or none stated) becomes lung cancer in the patient's mother;
  ``remove``: the positive statement becomes a negative one;
- ``add prior_cancer``: a negative (or absent) personal history becomes colon cancer treated by hemicolectomy
  eight years before the note's latest year: an extrathoracic cancer, the personal-history term of the Mayo model
  and PLCOm2012, and the only kind of prior cancer the cohort's truth knows; ``remove``: a stated personal history
  of cancer (any site) becomes "no personal history of malignancy". The issue's example, prior *lung* cancer
  (lobectomy), is kept as a probe (``add_prior_lung_cancer``): no model trained on this cohort can have learned
  it, since no note and no truth term holds it, so it is reported beside the rate, not inside it.
An edit that does not apply (adding a fact already there, removing one that is not) is skipped with its reason.

``direction_flag`` is the what-if panel's check: given the note before and after a user's edit and the two
risks, a plain-English warning when the edit adds or removes one of these facts and the risk moved the other way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

FACTORS: tuple[str, ...] = ("smoking", "family_history", "prior_cancer")
ACTIONS: tuple[str, ...] = ("add", "remove")
PUBLISHED_DIRECTION: dict[str, int] = {f: +1 for f in FACTORS}  # +1: having the factor raises the risk
FACTOR_WORDS: dict[str, str] = {"smoking": "current smoking", "family_history": "a family history of lung cancer",
                                "prior_cancer": "a prior cancer"}
SOURCES: dict[str, str] = {
    "smoking": "PLCOm2012 (Tammemagi et al., NEJM 2013); Mayo Clinic model (Swensen et al., Arch Intern Med 1997)",
    "family_history": "Brock/PanCan (McWilliams et al., NEJM 2013); PLCOm2012 (Tammemagi et al., NEJM 2013)",
    "prior_cancer": "PLCOm2012 (Tammemagi et al., NEJM 2013); Mayo Clinic model (Swensen et al., Arch Intern Med "
                    "1997)",
}
PACK_YEARS = 30  # the pack-years an added current smoker is given (a typical history)

_F = re.IGNORECASE
_REL = r"(?:mother|father|brother|sister|sibling|parent|son|daughter|aunt|uncle|grandmother|grandfather)s?"
_SUBJECT = r"(?:\b(?:she|he|the patient|patient|pt)\s+(?:is\s+(?:an?\s+)?|was\s+|has\s+)?|\bthere\s+(?:is|was)\s+)$"
_NEG_BEFORE = re.compile(r"(?:\b(?:no|not|denies|denied|without|negative for|neg for)\s+"
                         r"(?:any\s+|prior\s+|personal\s+|previous\s+|history\s+of\s+)*)$", _F)
_END_WORDS = re.compile(r"\.(?=\s|$)|;|\n|,\s+and\s|\s+but\s", _F)

_CURRENT = re.compile(r"\bcurrent(?:ly)? smok(?:er|es|ing)\b|\bcurr\.? smoker\b|\bactive smoker\b|"
                      r"\bactive tob(?:acco)? use\b|\bcontinues to smoke\b|\bstill smok(?:es|ing)\b|"
                      r"\bcurrent (?:tobacco|cigarette) use\b", _F)
_FORMER = re.compile(r"\bformer smoker\b|\bex-?smoker\b|\bfmr smoker\b|\b(?:quit|stopped) smoking\b|"
                     r"\bgave up (?:cigarettes|smoking)\b|\bsmoked\b.{0,60}?\bquit\b", _F)
_NEVER = re.compile(r"\bnever smoker\b|\b(?:has )?never smoked(?: cigarettes)?\b|\blifelong non-?smoker\b|"
                    r"\bnon-?smoker\b|\bnever a smoker\b|\btob: never\b|\bno tob(?:acco)? hx\b|"
                    r"\b(?:denies any|denies|no) history of (?:tobacco|smoking)(?: use)?\b|"
                    r"\bdenies (?:any )?(?:tobacco|smoking)(?: use)?\b", _F)
_DICTATED_AMOUNT = re.compile(r"(?:,? (?:with )?(?:an? )?(?:[a-z-]+ ){1,6}?pack year history|"
                              r" (?:[a-z-]+ ){1,6}?(?:per|a) day for (?:[a-z-]+ ){1,3}?years)"
                              r"(?: (?:and )?quit (?:about )?(?:[a-z-]+ ){1,3}?years ago)?", _F)
_CESSATION = (re.compile(r"\n\d+\. Tobacco use - cessation counseling provided[^\n]*"),
              re.compile(r" I strongly encouraged (?:her|him|them) to stop smoking\."),
              re.compile(r", smoking cessation counseled"),
              re.compile(r"smoking cessation was discussed at length "),
              re.compile(r" I have also referred (?:her|him|them) to our smoking cessation service\."),
              re.compile(r"[ \t]*[^.\n]*\b(?:smoking cessation|stop smoking|nicotine replacement)\b[^.\n]*\.", _F))

_FH_POS = re.compile(
    r"(?:\bthere is (?:a )?)?\bfamily history (?:is )?(?:of|significant for|positive for) lung (?:cancer|ca)\b"
    rf"(?: in (?:her|his|their|the patient's) {_REL}| \({_REL}\))?|"
    rf"(?:\b(?:her|his|their) )?\b{_REL}(?: and (?:her|his|their )?{_REL})? "
    r"(?:with|w/|had|has had|has|was treated for|died of) lung (?:cancer|ca)\b|"
    rf"\blung (?:cancer|ca) in (?:her|his|their|the patient's) {_REL}\b|"
    rf"\+?\bFHx?:? lung (?:cancer|ca)\b(?:,? \(?{_REL}\)?)?", _F)
_FH_NEG = re.compile(
    r"(?:\b(?:she|he) )?\b(?:denies|denied) (?:any )?family (?:history|hx) of (?:lung cancer|lung ca|malignancy|cancer)|"
    r"(?:\bthere is )?\bno family (?:history|hx) of (?:lung cancer|lung ca|malignancy|cancer)|"
    r"\bfamily history (?:is )?negative for (?:lung cancer|lung ca|malignancy|cancer)|"
    r"\bFHx?:? noncontrib(?:utory)?\b|\bFHx? neg(?:ative)? for lung (?:ca|cancer)\b|\bno FHx? lung (?:ca|cancer)\b|"
    r"\bthere is no lung cancer in the family|\bnobody in the family has had lung cancer|"
    r"(?<=FAMILY HISTORY: )noncontributory\b", _F)

_DISEASE = (r"(?:(?:breast|prostate|colon|colorectal|rectal|bladder|lung|renal cell|kidney|head and neck|thyroid|"
            r"ovarian|cervical|uterine|endometrial|pancreatic|gastric|esophageal|testicular|skin) "
            r"(?:cancer|carcinoma|ca\b)|melanoma|RCC|H&N ca\b|lymphoma|leukemia|cancer|malignancy|carcinoma)")
_PC_TAIL = (r"(?:(?:(?!\bhistory\b|\bhad\b|\bcancer\b|\bmalignancy\b)[^;.\n]){0,70}?"
            r"(?:\b(?:19|20)\d{2}\b\)?|\)))?"  # up to its year; never into the next statement
            r"(?: treated (?:with|by) (?:(?!\bmedications\b)[^,;.\n])*)?")  # "... in 2007 treated with surgery"
_PC_POS = re.compile(
    rf"(?:\b(?:she|he) (?:had|was treated for) |(?:\ba |\bpersonal )?\b(?:history of|h/o|hx|prior|previous) )"
    rf"{_DISEASE}{_PC_TAIL}|\b{_DISEASE} treated (?:with|by) {_PC_TAIL}", _F)
_PC_NEG = re.compile(
    r"(?:\b(?:she|he) )?\b(?:denies|denied) (?:any )?(?:prior |previous |personal history of )(?:malignancy|cancer)|"
    r"(?:\bthere (?:is|has been) )?\bno (?:prior |personal |previous )*(?:history of |h/o )?(?:cancer|malignancy|ca)\b|"
    r"\bPMH neg(?:ative)? for (?:ca|cancer|malignancy)\b", _F)


@dataclass(frozen=True)
class NoteEdit:
    """One counterfactual edit of a note: ``text`` is the edited note, or None with ``skip`` saying why not."""

    factor: str
    action: str
    text: str | None
    skip: str | None = None

    @property
    def expected(self) -> int:
        """The published direction of the risk's change: +1 up, -1 down."""
        return PUBLISHED_DIRECTION[self.factor] * (1 if self.action == "add" else -1)


class NotApplicable(ValueError):
    """The edit does not apply to this note (the fact is already there, or is not there to remove)."""


# ---------------------------------------------------------------------------------------------------------
# reading the note


def register(text: str) -> str:
    """The note's layout: ``structured``, ``terse``, ``dictated``, ``letter`` or ``narrative``."""
    if re.search(r"\bdictating\b", text, _F):
        return "dictated"
    if re.search(r"^(?:HPI|PMH|FH|SH):", text, re.M):
        return "terse"
    if re.search(r"^(?:PAST MEDICAL HISTORY|SOCIAL HISTORY|FAMILY HISTORY):", text, re.M):
        return "structured"
    if re.search(r"^Dear\b", text, re.M):
        return "letter"
    return "narrative"


def _pronouns(text: str) -> tuple[str, str]:
    """("she", "her") or ("he", "his"), whichever the note uses more."""
    f = len(re.findall(r"\b(?:she|her|hers|ms|mrs|woman|female)\b", text, _F))
    m = len(re.findall(r"\b(?:he|his|him|mr|man|male|gentleman)\b", text, _F))
    return ("he", "his") if m > f else ("she", "her")


def _negated(text: str, start: int) -> bool:
    return bool(_NEG_BEFORE.search(text[max(0, start - 40):start]))


def _family_context(text: str, start: int, end: int) -> bool:
    """True when a cancer mention belongs to a relative (family history, not the patient's own)."""
    before = text[max(0, start - 25):start]
    after = text[end:end + 30]
    return bool(re.search(r"\b(?:family|FHx?)\b[^.;\n]*$", before, _F)
                or re.match(rf"\s*(?:in|\()\s*(?:(?:her|his|their|the patient's)\s+)?{_REL}\b", after, _F))


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _smoking_spans(text: str, which: re.Pattern[str], negatable: bool) -> list[tuple[int, int]]:
    """The full statements of one smoking status: subject before the core phrase, amount after it."""
    out = []
    dictated = register(text) == "dictated"
    for s, e in _spans(which, text):
        if negatable and _negated(text, s):
            continue
        sub = re.search(_SUBJECT, text[max(0, s - 30):s], _F)
        start = s - (len(sub.group(0)) if sub else 0)
        if dictated:
            m = _DICTATED_AMOUNT.match(text, e)
            end = m.end() if m else e
        else:
            m = _END_WORDS.search(text, e)
            end = m.start() if m else len(text)
        out.append((start, end))
    return out


def smoking_status(text: str) -> str | None:
    """``current``, ``former`` or ``never`` as the note states it (current wins over former over never), or None."""
    if _smoking_spans(text, _CURRENT, True):
        return "current"
    if _smoking_spans(text, _FORMER, True):
        return "former"
    if _spans(_NEVER, text):
        return "never"
    return None


def _family_pos(text: str) -> list[tuple[int, int]]:
    return [(s, e) for s, e in _spans(_FH_POS, text) if not _negated(text, s)]


def _cancer_pos(text: str) -> list[tuple[int, int]]:
    spans = [(s, s + len(text[s:e].rstrip())) for s, e in _spans(_PC_POS, text)]
    return [(s, e) for s, e in spans if not _negated(text, s) and not _family_context(text, s, e)]


def has_factor(text: str, factor: str) -> bool:
    """Does the note state the factor (current smoking; a relative with lung cancer; a personal cancer history)?"""
    if factor == "smoking":
        return smoking_status(text) == "current"
    if factor == "family_history":
        return bool(_family_pos(text))
    if factor == "prior_cancer":
        return bool(_cancer_pos(text))
    raise ValueError(f"unknown factor {factor!r}: one of {', '.join(FACTORS)}")


def factors(text: str) -> dict[str, bool]:
    return {f: has_factor(text, f) for f in FACTORS}


# ---------------------------------------------------------------------------------------------------------
# writing the edit


def _like(original: str, new: str) -> str:
    """``new`` with the case of ``original``'s first letter (a sentence start stays capitalised)."""
    return new[:1].upper() + new[1:] if original[:1].isupper() else new


def _replace(text: str, span: tuple[int, int], new: str) -> str:
    s, e = span
    at_start = s == 0 or bool(re.search(r"(?:[.!?]\s+|\n\s*|:\s+)$", text[max(0, s - 3):s]))
    return text[:s] + (_like(text[s:e], new) if at_start or register(text) != "terse" else new) + text[e:]


def _after_sentence(text: str, span: tuple[int, int] | None) -> int | None:
    """The offset just after the sentence holding ``span`` (its full stop), or None."""
    if span is None:
        return None
    m = re.compile(r"\.(?=\s|$)").search(text, span[1])
    return m.end() if m else None


def _insert(text: str, at: int, new: str) -> str:
    return text[:at] + new + text[at:]


def _subject_form(text: str, span: tuple[int, int]) -> str | None:
    """'subject' when the statement opens with she/he, 'there' with there is/was, else None."""
    head = text[span[0]:span[1]].lower()
    if re.match(r"(?:she|he|the patient|patient|pt)\b", head):
        return "subject"
    if head.startswith(("there is", "there was", "there has been")):
        return "there"
    return None


def _add_smoking(text: str) -> str:
    status = smoking_status(text)
    if status == "current":
        raise NotApplicable("already a current smoker")
    if status == "former":
        raise NotApplicable("former smoker")
    spans = _smoking_spans(text, _NEVER, False)
    reg = register(text)
    she, _ = _pronouns(text)
    py = PACK_YEARS
    if spans:
        span = spans[0]
        form = _subject_form(text, span)
        if reg == "dictated":
            new = (f"{she} currently smokes with a thirty pack year history" if form
                   else "current smoker with a thirty pack year history")
        elif reg == "terse":
            new = f"current smoker {py} pk-yrs"
        elif form:
            new = f"{she} is a current smoker with a {py} pack-year history"
        else:
            new = f"current smoker with a {py} pack-year history"
        return _replace(text, span, new)
    # no smoking statement: write one where the note keeps its history
    if reg == "structured" and (m := re.search(r"SOCIAL HISTORY:[ \t]*", text)):
        return _insert(text, m.end(), f"Tobacco: current smoker with a {py} pack-year history. ")
    if reg == "terse" and (m := re.search(r"^SH:[ \t]*", text, re.M)):
        return _insert(text, m.end(), f"current smoker {py} pk-yrs, ")
    if reg == "dictated" and (m := re.search(r"\bpast medical history\b", text, _F)):
        return _insert(text, m.start(), "social history current smoker with a thirty pack year history ")
    return _append_sentence(text, f"{she.capitalize()} is a current smoker with a {py} pack-year history.")


def _remove_smoking(text: str) -> str:
    spans = _smoking_spans(text, _CURRENT, True)
    if not spans:
        raise NotApplicable("not a current smoker")
    reg = register(text)
    she, _ = _pronouns(text)
    for span in reversed(spans):  # every statement of it (a note may say it twice), last first: offsets hold
        form = _subject_form(text, span)
        if reg == "terse":
            new = "never smoker"
        elif form:
            new = f"{she} has never smoked"
        else:
            new = "never smoker"
        text = _replace(text, span, new)
    for pattern in _CESSATION:
        text = pattern.sub("", text)
    return text


def _append_sentence(text: str, sentence: str) -> str:
    """The last resort: a sentence after the note's first paragraph of history (or at its end)."""
    body = text.rstrip("\n")
    return body + "\n" + sentence + text[len(body):]


def _add_sentence(text: str, sentence: str) -> str:
    """A new sentence after the smoking statement (where the history is), else by ``_append_sentence``."""
    at = _after_sentence(text, _smoking_anchor(text))
    return _insert(text, at, " " + sentence) if at is not None else _append_sentence(text, sentence)


def _smoking_anchor(text: str) -> tuple[int, int] | None:
    for which in (_CURRENT, _FORMER, _NEVER):
        spans = _smoking_spans(text, which, which is not _NEVER)
        if spans:
            return spans[0]
    return None


def _add_family(text: str) -> str:
    if _family_pos(text):
        raise NotApplicable("family history already stated")
    reg = register(text)
    _, her = _pronouns(text)
    neg = _spans(_FH_NEG, text)
    if neg:
        span = neg[0]
        head = text[span[0]:span[1]]
        if reg == "terse":
            new = "+FHx lung ca (mother)"
        elif reg == "dictated":
            new = f"{her} mother had lung cancer"
        elif reg == "letter":
            new = f"{her} mother was treated for lung cancer"
        elif head.lower().startswith("there is"):
            new = f"there is a family history of lung cancer in {her} mother"
        elif head.lower() == "noncontributory":
            new = f"family history of lung cancer in {her} mother"
        else:
            new = f"family history of lung cancer in {her} mother"
        return _replace(text, span, new)
    if reg == "structured" and (m := re.search(r"FAMILY HISTORY:[ \t]*", text)):
        return _insert(text, m.end(), f"family history of lung cancer in {her} mother. ")
    if reg == "terse" and (m := re.search(r"^FH:[ \t]*", text, re.M)):
        return _insert(text, m.end(), "+FHx lung ca (mother), ")
    if reg == "dictated" and (m := re.search(r"\bpast medical history\b", text, _F)):
        return _insert(text, m.start(), f"{her} mother had lung cancer ")
    return _add_sentence(text, f"{her.capitalize()} mother was treated for lung cancer." if reg == "letter"
                         else f"There is a family history of lung cancer in {her} mother.")


def _remove_family(text: str) -> str:
    spans = _family_pos(text)
    if not spans:
        raise NotApplicable("no family history of lung cancer stated")
    reg = register(text)
    for span in reversed(spans):
        head = text[span[0]:span[1]].lower()
        if reg == "terse":
            new = "no FHx lung ca"
        elif reg == "letter":
            new = "there is no lung cancer in the family"
        elif head.startswith("there is"):
            new = "there is no family history of lung cancer"
        else:
            new = "no family history of lung cancer"
        text = _replace(text, span, new)
    return text


# what "add a prior cancer" writes: the cancer, its terse form, the treatment and its abbreviation
PRIOR_CANCERS: dict[str, tuple[str, str, str, str]] = {
    # an extrathoracic cancer, the Mayo model's term (and PLCOm2012's "personal history of cancer"), sex-neutral
    "colon": ("colon cancer", "colon ca", "hemicolectomy", "hemicolectomy"),
    # prior *lung* cancer: the example; a probe only, since the cohort's truth has no such term
    # (``counterfactual_prior_lung_cancer`` in bench explain)
    "lung": ("lung cancer", "lung ca", "right upper lobectomy", "RUL lobectomy"),
}
PRIOR_CANCER_YEARS_BEFORE = 8  # the added cancer was treated this many years before the note's latest year


def _treated_year(text: str) -> str:
    """A year ``PRIOR_CANCER_YEARS_BEFORE`` before the latest year the note names ("" when it names none)."""
    years = [int(y) for y in re.findall(r"\b(19[5-9]\d|20[0-4]\d)\b", text)]
    return f" {max(years) - PRIOR_CANCER_YEARS_BEFORE}" if years else ""


def _add_cancer(text: str, kind: str = "colon") -> str:
    if _cancer_pos(text):
        raise NotApplicable("a prior cancer already stated")
    disease, terse, tx, tx_terse = PRIOR_CANCERS[kind]
    year = _treated_year(text)
    in_year = f" in{year}" if year else ""
    reg = register(text)
    she, her = _pronouns(text)
    formal = f"history of {disease} s/p {tx}{year}"
    neg = _spans(_PC_NEG, text)
    if neg:
        span = neg[0]
        form = _subject_form(text, span)
        if reg == "terse":
            new = f"h/o {terse} s/p {tx_terse}{year}"
        elif reg == "dictated":
            new = f"history of {disease} treated with {tx}{in_year}"
        elif reg == "letter":
            new = f"{she} was treated for {disease} with {tx}{in_year}"
        elif form == "subject":
            new = f"{she} had {disease}{in_year} treated with {tx}"
        elif form == "there":
            new = f"there is a {formal}"
        else:
            new = formal
        out = _replace(text, span, new)
        if reg == "letter":
            out = re.sub(r"Reassuringly, (?=" + re.escape(_like(text[span[0]:span[1]], new)) + ")", "Importantly, ", out)
        return out
    if reg == "structured" and (m := re.search(r"(PAST MEDICAL HISTORY:[^\n]*?)\.?[ \t]*$", text, re.M)):
        return _insert(text, m.end(1), f"; {formal}")
    if reg == "terse" and (m := re.search(r"^(PMH:[^\n]*?)[ \t]*$", text, re.M)):
        return _insert(text, m.end(1), f", h/o {terse} s/p {tx_terse}{year}")
    if reg == "dictated" and (m := re.search(r"\bpast medical history ", text, _F)):
        return _insert(text, m.end(), f"history of {disease} treated with {tx}{in_year}, ")
    if reg == "narrative" and (m := re.search(r"(\bpast history includes [^.\n]*?)\.(?=\s|$)", text, _F)):
        return _insert(text, m.end(1), f", and {formal}")
    return _add_sentence(text, f"Importantly, {she} was treated for {disease} with {tx}{in_year}." if reg == "letter"
                         else f"{she.capitalize()} has a {formal}.")


def add_prior_lung_cancer(text: str) -> str:
    """The probe edit: a negative (or absent) personal history becomes prior lung cancer treated by lobectomy."""
    return _add_cancer(text, "lung")


def _remove_cancer(text: str) -> str:
    spans = _cancer_pos(text)
    if not spans:
        raise NotApplicable("no prior cancer stated")
    reg = register(text)
    for span in reversed(spans):
        form = _subject_form(text, span)
        if reg == "terse":
            new = "no h/o ca"
        elif reg == "dictated":
            new = "no prior history of cancer"
        elif reg == "letter" or form:
            new = "there is no personal history of cancer"
        else:
            new = "no personal history of malignancy"
        before = text[:span[0]]
        text = _replace(text, span, new)
        if reg == "letter" and before.endswith("Importantly, "):
            text = before[:-len("Importantly, ")] + "Reassuringly, " + text[len(before):]
    return text


_EDITS = {("smoking", "add"): _add_smoking, ("smoking", "remove"): _remove_smoking,
          ("family_history", "add"): _add_family, ("family_history", "remove"): _remove_family,
          ("prior_cancer", "add"): _add_cancer, ("prior_cancer", "remove"): _remove_cancer}


def edit_note(note: str, factor: str, action: str) -> str:
    """The note with ``factor`` added or removed (module docstring); raises ``NotApplicable`` when it does not
    apply (adding a fact the note already states, removing one it does not)."""
    if (factor, action) not in _EDITS:
        raise ValueError(f"unknown edit {action} {factor}: factors {', '.join(FACTORS)}, actions {', '.join(ACTIONS)}")
    return _EDITS[factor, action](note)


def note_edits(note: str, factors: Sequence[str] = FACTORS) -> list[NoteEdit]:
    """Both edits of every factor on one note; the one that does not apply comes back with its ``skip`` reason
    (for each factor exactly one of add and remove applies, unless the factor's statement cannot be rewritten)."""
    out = []
    for f in factors:
        for a in ACTIONS:
            try:
                out.append(NoteEdit(f, a, edit_note(note, f, a)))
            except NotApplicable as exc:
                out.append(NoteEdit(f, a, None, str(exc)))
    return out


# ---------------------------------------------------------------------------------------------------------
# scoring


def moved_as_published(p_before: float, p_after: float, expected: int) -> bool:
    """Did the risk move in the published direction? An unchanged risk did not."""
    return p_after > p_before if expected > 0 else p_after < p_before


def direction_rate(p_before: Sequence[float], p_after: Sequence[float], expected: Sequence[int]) -> float:
    """The share of edits whose risk moved in the published direction (nan with no edit)."""
    n = len(expected)
    if n == 0:
        return float("nan")
    return sum(moved_as_published(b, a, e) for b, a, e in zip(p_before, p_after, expected, strict=True)) / n


def _status_rank(text: str) -> int:
    """Smoking as an ordered exposure: never (or not stated) 0, former 1, current 2."""
    return {"current": 2, "former": 1}.get(smoking_status(text) or "", 0)


def direction_flag(original_note: str, edited_note: str, p_before: float, p_after: float) -> str | None:
    """A plain-English warning when the edit adds or removes a published risk factor (current smoking, a smoking
    history, a family history of lung cancer, a prior cancer; found in the text) and the risk moved the other
    way; None when nothing of the kind changed, the risk moved as published, or the edit changed factors in
    opposite directions (no published direction for the whole edit)."""
    changes: list[tuple[str, int]] = []  # (what changed, in words; +1 raises the published risk, -1 lowers it)
    r0, r1 = _status_rank(original_note), _status_rank(edited_note)
    if r0 != r1:
        names = {0: "a never-smoker", 1: "a former smoker", 2: "a current smoker"}
        changes.append((f"the patient changed from {names[r0]} to {names[r1]}", 1 if r1 > r0 else -1))
    for f in ("family_history", "prior_cancer"):
        a, b = has_factor(original_note, f), has_factor(edited_note, f)
        if a != b:
            changes.append((f"{'added' if b else 'removed'} {FACTOR_WORDS[f]}", 1 if b else -1))
    if not changes or len({d for _, d in changes}) > 1:
        return None
    expected = changes[0][1]
    if moved_as_published(p_before, p_after, expected) or p_after == p_before:
        return None
    what = "; ".join(c for c, _ in changes)
    way, should = ("fell", "raise") if expected > 0 else ("rose", "lower")
    return (f"Check this result: the edit {what}, and the model's risk {way} from {p_before:.0%} to {p_after:.0%}. "
            f"Published risk models (Brock/PanCan, PLCOm2012) say this change should {should} the risk. The model "
            "may be reading the note wrongly; do not rely on this what-if without a clinician's review.")


__all__ = ["ACTIONS", "FACTORS", "PRIOR_CANCERS", "PUBLISHED_DIRECTION", "SOURCES", "NotApplicable", "NoteEdit",
           "add_prior_lung_cancer", "direction_flag", "direction_rate", "edit_note", "factors", "has_factor",
           "moved_as_published", "note_edits", "register", "smoking_status"]
