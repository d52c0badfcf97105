"""Write one patient's referral / clinic note about an incidental pulmonary nodule, with fake PHI in it.

The note carries the note-only truth (age, sex, family history, smoking, prior cancer, prior CT, sometimes
emphysema) and never a CT-only variable (size, type, spiculation, lobe, count): a reader, or a model, has to
get those from the images. Each hospital writes in its own house styles (``SITE_STYLES``); ``EVAL_STYLE``, a
letter to the referring physician, is used by no site, so de-identification can be scored on a layout and
phrasing it was not developed against.

Alongside the text the generator returns ``phi`` (every PHI string as written, for scoring de-identification)
and ``facts`` (variable -> the exact PHI-free phrase that states it, for checking that de-identification kept
the clinical signal and for word-level explanation checks).

The phrase builders below take a *register*: ``formal`` (structured and narrative notes), ``terse``
(abbreviations), ``spoken`` (dictation: numbers spelled out) and ``letter`` (first person, to a colleague).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from workbench.cohort.identity import CITY_STATE, person_name, pick
from workbench.cohort.note_exposure import EXPOSURE_FACT, exposure_insert
from workbench.cohort.spec import PatientIdentity, PatientTruth

SITE_STYLES: tuple[str, ...] = ("structured", "narrative", "terse", "dictated")
EVAL_STYLE: str = "letter"  # kept out of every site; only used to test de-identification on unseen text
ALL_STYLES: tuple[str, ...] = (*SITE_STYLES, EVAL_STYLE)
FACT_KEYS = ("age", "sex", "family_history", "smoking", "prior_cancer", "prior_ct", "emphysema")

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
        "twelve": "twelfth"}

CANCER_HISTORY: dict[str, tuple[str, tuple[str, ...]]] = {  # truth site -> (disease, treatments)
    "breast": ("breast cancer", ("lumpectomy", "mastectomy", "lumpectomy and radiation")),
    "prostate": ("prostate cancer", ("prostatectomy", "radiation therapy", "brachytherapy")),
    "colon": ("colon cancer", ("hemicolectomy", "colectomy and chemotherapy")),
    "melanoma": ("melanoma", ("wide local excision", "excision")),
    "renal cell": ("renal cell carcinoma", ("nephrectomy", "partial nephrectomy")),
    "bladder": ("bladder cancer", ("TURBT", "cystectomy")),
    "head and neck": ("head and neck cancer", ("chemoradiation", "surgery and radiation")),
}
_CANCER_TERSE = {"breast": "breast ca", "prostate": "prostate ca", "colon": "colon ca", "melanoma": "melanoma",
                 "renal cell": "RCC", "bladder": "bladder ca", "head and neck": "H&N ca"}

PMH_ITEMS = (("hypertension", "HTN"), ("hyperlipidemia", "HLD"), ("type 2 diabetes", "T2DM"), ("GERD", "GERD"),
             ("hypothyroidism", "hypothyroid"), ("osteoarthritis", "OA"), ("coronary artery disease", "CAD"),
             ("atrial fibrillation", "AFib"), ("obstructive sleep apnea", "OSA"), ("depression", "depression"),
             ("chronic kidney disease stage 3", "CKD3"), ("gout", "gout"))
MEDS = ("lisinopril 20 mg daily", "amlodipine 5 mg daily", "atorvastatin 40 mg nightly", "metformin 1000 mg BID",
        "levothyroxine 75 mcg daily", "omeprazole 20 mg daily", "aspirin 81 mg daily", "Eliquis 5 mg BID",
        "sertraline 50 mg daily", "Lipitor 20 mg daily", "hydrochlorothiazide 25 mg daily", "Synthroid 50 mcg daily",
        "metoprolol succinate 50 mg daily", "allopurinol 100 mg daily")
COPD_MEDS = ("tiotropium 18 mcg inhaled daily", "albuterol HFA 2 puffs q4h PRN", "Symbicort 160/4.5 2 puffs BID")
CT_REASONS = ("an episode of abdominal pain", "suspected kidney stones", "trauma after a fall",
              "chest pain (CT angiogram)", "preoperative planning", "a persistent cough",
              "staging of an unrelated condition", "a motor vehicle accident")
SYMPTOMS = ("cough", "hemoptysis", "weight loss", "fevers", "night sweats", "chest pain", "dyspnea")


@dataclass
class GeneratedNote:
    text: str
    phi: list[str]  # every PHI string placed in the text, exactly as written
    facts: dict[str, str]  # variable -> the exact PHI-free phrase in ``text`` that carries it


# ---------------------------------------------------------------------------------------------------------
# small writers


def words(n: int) -> str:
    """0..999 in words, hyphenated the way transcriptionists write them ("sixty-seven")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")
    return f"{_ONES[n // 100]} hundred" + (f" {words(n % 100)}" if n % 100 else "")


def ordinal_words(n: int) -> str:
    """1..31 as a spoken ordinal ("fourteenth", "twenty-first")."""
    w = words(n)
    head, _, last = w.rpartition("-")
    if last in _ORD:
        last = _ORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}-{last}" if head else last


def fmt_date(d: date, fmt: str) -> str:
    """One of the many ways clinical text writes a date; ``fmt`` names it."""
    m = MONTHS[d.month - 1]
    return {
        "us": f"{d.month:02d}/{d.day:02d}/{d.year}",
        "us_short": f"{d.month}/{d.day}/{d.year}",
        "us_2y": f"{d.month}/{d.day}/{d.year % 100:02d}",
        "us_dash": f"{d.month:02d}-{d.day:02d}-{d.year}",
        "long": f"{m} {d.day}, {d.year}",
        "abbr": f"{m[:3]} {d.day}, {d.year}",
        "iso": d.isoformat(),
        "dmy_mon": f"{d.day:02d}-{m[:3]}-{d.year}",
        "dmy_mon_upper": f"{d.day:02d}-{m[:3].upper()}-{d.year}",
        "dmy_long": f"{d.day} {m} {d.year}",
        "spoken": f"{m} {ordinal_words(d.day)}, {d.year}",
        "ordinal": f"{m} {d.day}{_suffix(d.day)}, {d.year}",
    }[fmt]


def _suffix(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


NUMERIC_DATES = ("us", "us_short", "us_2y", "us_dash", "iso")
WORD_DATES = ("long", "abbr", "dmy_mon", "dmy_mon_upper", "dmy_long", "ordinal")


class _Pen:
    """Collects PHI strings and fact phrases while the note is written, so the two can never drift apart."""

    def __init__(self, rng: np.random.Generator, truth: PatientTruth, ident: PatientIdentity) -> None:
        self.rng, self.t, self.id = rng, truth, ident
        self.phi: list[str] = []
        self.facts: dict[str, str] = {}
        self.she = "she" if truth.female else "he"
        self.her = "her" if truth.female else "his"
        self.obj = "her" if truth.female else "him"
        self.title = pick(rng, ("Ms.", "Mrs.")) if truth.female else "Mr."
        self.author = person_name(rng)

    # PHI and facts -----------------------------------------------------------------------------------
    def p(self, s: str) -> str:
        if s not in self.phi:
            self.phi.append(s)
        return s

    def f(self, key: str, s: str) -> str:
        self.facts.setdefault(key, s)
        return s

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, seq: Sequence[str]) -> str:
        return pick(self.rng, seq)

    # names -------------------------------------------------------------------------------------------
    def first(self, upper: bool = False) -> str:
        return self.p(self.id.first_name.upper() if upper else self.id.first_name)

    def last(self, upper: bool = False) -> str:
        return self.p(self.id.last_name.upper() if upper else self.id.last_name)

    def full(self) -> str:
        return f"{self.first()} {self.last()}"

    def last_first(self, upper: bool = False) -> str:
        return f"{self.last(upper)}, {self.first(upper)}"

    def mr(self) -> str:
        return f"{self.title} {self.last()}"

    def doc(self, form: str = "") -> str:
        """The referring physician: 'Dr. Patel', 'Dr. Anand Patel' or 'Anand Patel, MD'."""
        first, last = self.id.physician.split(" ", 1)
        form = form or self.pick(("last", "full", "md"))
        if form == "last":
            return f"Dr. {self.p(last)}"
        if form == "full":
            return f"Dr. {self.p(first)} {self.p(last)}"
        return f"{self.p(first)} {self.p(last)}, {self.pick(('MD', 'M.D.', 'DO'))}"

    def author_sig(self) -> str:
        first, last = self.author
        return f"{self.p(first)} {self.p(last)}, {self.pick(('MD', 'M.D.', 'MD, FCCP', 'DO'))}"

    def relative(self) -> str:
        """A relative named in passing ("her husband, Carlos") - their names are PHI too."""
        rel = self.pick(("daughter", "son", "husband" if self.t.female else "wife", "sister", "brother"))
        female_rel = rel in ("daughter", "wife", "sister")
        return f"{rel}, {self.p(person_name(self.rng, female=female_rel)[0])}"

    # dates -------------------------------------------------------------------------------------------
    def day(self, d: date, fmts: Sequence[str] = (*NUMERIC_DATES, *WORD_DATES)) -> str:
        return self.p(fmt_date(d, self.pick(fmts)))

    def visit(self, fmts: Sequence[str] = (*NUMERIC_DATES, *WORD_DATES)) -> str:
        return self.day(self.id.visit_date, fmts)

    def dob(self, fmts: Sequence[str] = (*NUMERIC_DATES, *WORD_DATES)) -> str:
        return self.day(self.id.birth_date, fmts)

    def later(self, lo: int, hi: int) -> date:
        return self.id.visit_date + timedelta(days=int(self.rng.integers(lo, hi)))

    # contacts ----------------------------------------------------------------------------------------
    def address(self) -> str:
        state = CITY_STATE.get(self.id.city, "")
        return f"{self.p(self.id.street)}, {self.p(self.id.city)}, {state} {self.p(self.id.zip_code)}"

    def phone(self) -> str:
        return self.p(self.id.phone)

    def email(self) -> str:
        return self.p(self.id.email)

    def mrn(self) -> str:
        return self.p(self.id.mrn)

    def acc(self) -> str:
        return self.p(self.id.accession)

    def ssn(self) -> str:
        return self.p(self.id.ssn)

    def inst(self) -> str:
        return self.p(self.id.institution)

    def city(self) -> str:
        return self.p(self.id.city)


# ---------------------------------------------------------------------------------------------------------
# clinical phrases (each returns the fact phrase; the caller embeds it)


def _age_sex(pen: _Pen, reg: str) -> tuple[str, str]:
    """(age phrase, sex noun phrase). Ages over 89 are PHI: written in a unit form and recorded as such."""
    t = pen.t
    old = t.age > 89
    if reg == "spoken":
        age = f"{words(t.age)}{pen.pick(('-year-old', ' year old'))}"
    elif reg == "terse":
        age = pen.pick((f"{t.age} yo", f"{t.age}yo", f"{t.age} y/o", f"{t.age} y.o."))
    elif old:
        age = pen.pick((f"{t.age}-year-old", f"{t.age} year old"))
    else:
        age = pen.pick((f"{t.age}-year-old", f"{t.age}-year-old", f"{t.age} year old", f"{t.age} yo"))
    if reg == "terse":
        sex = pen.pick(("F", "female")) if t.female else pen.pick(("M", "male"))
    else:
        sex = pen.pick(("woman", "female", "lady")) if t.female else pen.pick(("man", "male", "gentleman"))
    if old:
        pen.p(age)
    else:
        pen.f("age", age)
    return age, sex


def _sex_fact(pen: _Pen, age: str, sex: str) -> None:
    """The sex phrase keeps the age in front of it ("67-year-old man"): 'man' or 'F' alone would be found
    anywhere ('woman', 'management'), which makes a useless retention check. Over 89 the age is PHI, so the
    noun stands alone there."""
    if pen.t.age <= 89:
        pen.f("sex", f"{age} {sex}")
    elif len(sex) > 1:
        pen.f("sex", sex)


def _capf(pen: _Pen, key: str, phrase: str) -> str:
    """Capitalise a fact phrase at the start of a sentence and keep ``facts`` pointing at what is written."""
    cap = _cap(phrase)
    if pen.facts.get(key) == phrase:
        pen.facts[key] = cap
    return cap


def _a(phrase: str) -> str:
    return f"an {phrase}" if phrase[:1].lower() in "aeiou" else f"a {phrase}"


def _smoking_sentence(pen: _Pen, smoking: str) -> str:
    """'She is a former smoker ...' / 'She has never smoked' / 'There is no history of tobacco use'."""
    if smoking.startswith(("no ", "never smoked")):
        return f"There is {smoking}." if smoking.startswith("no ") else f"{_cap(pen.she)} {smoking}."
    if smoking.startswith(("has ", "currently", "denies")):
        return f"{_cap(pen.she)} {smoking}."
    return f"{_cap(pen.she)} is {_a(smoking)}."


def _ppd_options(t: PatientTruth) -> list[tuple[float, int]]:
    """(packs per day, years) pairs that give exactly the truth's pack-years at a believable duration."""
    out = []
    for ppd in (0.5, 1.0, 1.5, 2.0):
        yrs = t.pack_years / ppd
        if abs(yrs - round(yrs)) < 1e-9 and 3 <= yrs <= t.age - 14:
            out.append((ppd, int(round(yrs))))
    return out


def _ppd_text(ppd: float, spoken: bool) -> str:
    if not spoken:
        return f"{ppd:g}"
    return {0.5: "half a pack", 1.0: "one pack", 1.5: "one and a half packs", 2.0: "two packs"}[ppd]


def _smoking(pen: _Pen, reg: str) -> str:
    t, rng = pen.t, pen.rng
    py, she = t.pack_years, pen.she
    if t.smoking == "never":
        phrase = {
            "formal": ("never smoker", "lifelong non-smoker", "has never smoked", "denies any history of tobacco use",
                       "no history of tobacco use"),
            "terse": ("never smoker", "nonsmoker", "tob: never", "no tob hx", "never smoked"),
            "spoken": (f"{she} has never smoked", f"{she} is a lifelong nonsmoker", "never a smoker"),
            "letter": (f"{she} has never smoked", f"{she} is a lifelong non-smoker", f"{she} never smoked cigarettes"),
        }[reg]
        return pen.f("smoking", pen.pick(phrase))
    quit_ago = int(rng.integers(1, max(2, min(30, t.age - 30))))
    quit_year = _visit_year(pen) - quit_ago
    ppd = _ppd_options(t)
    use_ppd = bool(ppd) and pen.chance(0.35)
    pd, yrs = ppd[int(rng.integers(len(ppd)))] if ppd else (1.0, py)
    if reg == "spoken":
        amount = (f"{_ppd_text(pd, True)} per day for {words(yrs)} years" if use_ppd
                  else f"a {words(py)} pack year history")
        if t.smoking == "former":
            return pen.f("smoking", pen.pick((f"{she} is a former smoker with {amount}" if not use_ppd else
                                              f"{she} is a former smoker who smoked {amount}",
                                              f"former smoker {amount.removeprefix('a ')} quit about "
                                              f"{words(quit_ago)} years ago")))
        return pen.f("smoking", pen.pick((f"{she} currently smokes with {amount}" if not use_ppd else
                                          f"{she} currently smokes {amount}",
                                          f"active smoker {amount.removeprefix('a ')}")))
    if reg == "terse":
        amount = (f"{pd:g} ppd x {yrs} yrs" if use_ppd
                  else pen.pick((f"{py} pk-yr", f"{py} pk-yrs", f"{py} PY", f"{py} pkyrs", f"{py} pack-yrs")))
        if t.smoking == "former":
            return pen.f("smoking", pen.pick((f"ex-smoker {amount}", f"former smoker, {amount}, quit {quit_year}",
                                              f"fmr smoker {amount} quit {quit_year}")))
        return pen.f("smoking", pen.pick((f"current smoker {amount}", f"curr smoker, {amount}",
                                          f"active tob use {amount}")))
    if reg == "letter":
        if t.smoking == "former":
            return pen.f("smoking", pen.pick((
                f"{she} stopped smoking in {quit_year}, having accumulated roughly {py} pack-years",
                f"{she} gave up cigarettes {quit_ago} years ago after about {py} pack-years",
                f"{she} smoked {_ppd_text(pd, True)} a day for {yrs} years and quit in {quit_year}"
                if use_ppd else f"{she} is an ex-smoker of some {py} pack-years")))
        return pen.f("smoking", pen.pick((
            f"{she} continues to smoke, with a history of about {py} pack-years",
            f"{she} still smokes {_ppd_text(pd, True)} a day and has done so for {yrs} years" if use_ppd
            else f"{she} is still smoking, {py} pack-years to date")))
    amount = (f"{pd:g} ppd x {yrs} yrs" if use_ppd
              else pen.pick((f"{py} pack-years", f"{py} pack-year history", f"{py} pk-yr")))
    if t.smoking == "former":
        return pen.f("smoking", pen.pick((f"former smoker with a {amount}" if "history" in amount
                                          else f"former smoker ({amount}), quit in {quit_year}",
                                          f"former smoker, {amount}, quit {quit_ago} years ago",
                                          f"ex-smoker, {amount}")))
    return pen.f("smoking", pen.pick((f"current smoker with a {amount}" if "history" in amount
                                      else f"current smoker, {amount}",
                                      f"currently smokes ({amount})", f"active smoker, {amount}")))


def _visit_year(pen: _Pen) -> int:
    return pen.id.visit_date.year


def _family(pen: _Pen, reg: str) -> str | None:
    t = pen.t
    if t.family_history:
        rel = pen.pick(("mother", "father", "brother", "sister"))
        phrase = {
            "formal": (f"family history of lung cancer in {pen.her} {rel}", f"{rel} with lung cancer",
                       f"family history significant for lung cancer ({rel})"),
            "terse": (f"FHx lung ca ({rel})", f"FH: {rel} w/ lung ca", f"+FHx lung cancer, {rel}"),
            "spoken": (f"{pen.her} {rel} had lung cancer", f"family history is positive for lung cancer in {pen.her} "
                                                          f"{rel}"),
            "letter": (f"{pen.her} {rel} was treated for lung cancer", f"lung cancer in {pen.her} {rel}"),
        }[reg]
        return pen.f("family_history", pen.pick(phrase))
    if pen.chance(0.15):
        return None  # not every note bothers to say so
    phrase = {
        "formal": ("denies family history of lung cancer", "no family history of lung cancer",
                   "family history negative for lung cancer", "no family hx of malignancy"),
        "terse": ("FHx: noncontributory", "FHx neg for lung ca", "no FHx lung ca", "FH: noncontrib"),
        "spoken": ("denies any family history of lung cancer", "no family history of lung cancer"),
        "letter": ("there is no lung cancer in the family", "nobody in the family has had lung cancer"),
    }[reg]
    return pen.f("family_history", pen.pick(phrase))


def _prior_cancer(pen: _Pen, reg: str) -> str | None:
    t = pen.t
    if t.prior_cancer and t.prior_cancer_site:
        disease, treatments = CANCER_HISTORY.get(t.prior_cancer_site, (f"{t.prior_cancer_site} cancer", ("surgery",)))
        year = _visit_year(pen) - int(pen.rng.integers(2, 16))
        tx = pen.pick(treatments)
        phrase = {
            "formal": (f"history of {disease} s/p {tx} {year}", f"{disease} treated with {tx} in {year}",
                       f"prior {disease} ({tx}, {year})"),
            "terse": (f"h/o {_CANCER_TERSE.get(t.prior_cancer_site, disease)} s/p {tx} {year}",
                      f"hx {_CANCER_TERSE.get(t.prior_cancer_site, disease)} ({year}, {tx})"),
            "spoken": (f"history of {disease} treated with {tx} in {year}",
                       f"{pen.she} had {disease} in {year} treated with {tx}"),
            "letter": (f"{pen.she} was treated for {disease} with {tx} in {year}",
                       f"{pen.she} had {disease}, treated by {tx} in {year}"),
        }[reg]
        return pen.f("prior_cancer", pen.pick(phrase))
    if pen.chance(0.25):
        return None
    phrase = {
        "formal": ("no prior history of cancer", "no personal history of malignancy", "denies prior malignancy"),
        "terse": ("no h/o ca", "no prior malignancy", "PMH neg for ca"),
        "spoken": ("no prior history of cancer", "no personal history of cancer"),
        "letter": ("there is no personal history of cancer", "there has been no previous malignancy"),
    }[reg]
    return pen.f("prior_cancer", pen.pick(phrase))


def _interval(years: float, reg: str, rng: np.random.Generator, *, months_below: float = 2.0) -> str:
    """'8 months' / '3 years' / 'two and a half years', from the truth's years since the prior CT."""
    spoken = reg == "spoken"
    if years < months_below:
        m = max(2, int(round(years * 12)))
        if spoken:
            return f"{words(m)} months"
        return f"{m} mo" if reg == "terse" else f"{m} months"
    whole = int(round(years))
    half = abs(years - (int(years) + 0.5)) < 0.26 and rng.random() < 0.4
    if spoken:
        return f"{words(int(years))} and a half years" if half else f"{words(whole)} years"
    if half:
        return f"{int(years) + 0.5:g} yrs" if reg == "terse" else f"{int(years) + 0.5:g} years"
    return f"{whole} yrs" if reg == "terse" else f"{whole} years"


def _prior_ct(pen: _Pen, reg: str) -> str | None:
    t = pen.t
    if t.prior_ct == "none" or t.prior_ct_years is None:
        if pen.chance(0.7):
            return None
        phrase = {"formal": ("no prior imaging available for comparison", "no prior chest CT for comparison"),
                  "terse": ("no prior imaging for comparison", "no priors available"),
                  "spoken": ("there is no prior imaging available for comparison",),
                  "letter": ("there are no earlier scans to compare with",)}[reg]
        return pen.f("prior_ct", pen.pick(phrase))
    span = _interval(t.prior_ct_years, reg, pen.rng, months_below=2.0 if t.prior_ct != "stable_short" else 99.0)
    if t.prior_ct == "stable_2y":
        phrase = {"formal": (f"unchanged compared with CT from {span} ago", f"stable compared with a chest CT "
                             f"obtained {span} ago", f"without change since a prior CT {span} ago"),
                  "terse": (f"stable vs CT {span} ago", f"unchanged since CT {span} prior"),
                  "spoken": (f"unchanged compared with a CT from about {span} ago", f"stable since a CT {span} ago"),
                  "letter": (f"it has not changed since a CT {span} ago", f"it looks the same as on a scan taken "
                             f"{span} ago")}[reg]
    elif t.prior_ct == "stable_short":
        phrase = {"formal": (f"stable since CT {span} ago", f"unchanged from a CT performed {span} ago"),
                  "terse": (f"stable vs CT {span} ago", f"no change c/w CT {span} prior"),
                  "spoken": (f"stable since a CT {span} ago",),
                  "letter": (f"it is unchanged from a scan {span} ago",)}[reg]
    else:
        phrase = {"formal": (f"increased in size since prior CT {span} ago", f"enlarged compared with a CT {span} ago",
                             f"showing interval growth since CT {span} ago"),
                  "terse": (f"interval growth vs CT {span} ago", f"incr in size c/w CT {span} prior"),
                  "spoken": (f"it has grown since a CT {span} ago", f"increased in size since a CT {span} ago"),
                  "letter": (f"it has grown since a scan {span} ago", f"it is larger than on a CT {span} ago")}[reg]
    return pen.f("prior_ct", pen.pick(phrase))


def _prior_ct_sentence(pen: _Pen, phrase: str, lead: str) -> str:
    """'The nodule is stable since ...' - or, with no prior CT, the phrase as its own sentence."""
    if pen.t.prior_ct == "none":
        return f"{_capf(pen, 'prior_ct', phrase)}."
    return f"{lead} {phrase}."


def _emphysema(pen: _Pen, reg: str) -> str | None:
    if not pen.t.emphysema_in_note:
        return None
    phrase = {"formal": ("COPD", "emphysema on prior imaging", "centrilobular emphysema", "COPD (GOLD 2)"),
              "terse": ("COPD", "emphysema", "COPD GOLD 2"),
              "spoken": ("COPD", "emphysema"),
              "letter": ("COPD", "emphysema on previous imaging", "centrilobular emphysema")}[reg]
    return pen.f("emphysema", pen.pick(phrase))


def _exposure(pen: _Pen, reg: str) -> str:
    """The shifted truth's asbestos sentence (``note_exposure.py``, which says why it lives there), or nothing.
    It draws no random number, so the rest of the note is the brock note's; no string literal here either."""
    text, fact = exposure_insert(pen.t, reg, pen.she)
    if fact:
        pen.f(EXPOSURE_FACT, fact)
    return text


def _pmh(pen: _Pen, terse: bool) -> list[str]:
    n = int(pen.rng.integers(1, 4))
    idx = pen.rng.choice(len(PMH_ITEMS), size=n, replace=False)
    return [PMH_ITEMS[int(i)][1 if terse else 0] for i in sorted(idx)]


def _meds(pen: _Pen) -> list[str]:
    n = int(pen.rng.integers(1, 5))
    meds = [MEDS[int(i)] for i in sorted(pen.rng.choice(len(MEDS), size=n, replace=False))]
    if pen.t.emphysema_in_note:
        meds.append(pen.pick(COPD_MEDS))
    return meds


def _vitals(pen: _Pen, terse: bool) -> str:
    r = pen.rng
    bp = f"{int(r.integers(108, 162))}/{int(r.integers(62, 96))}"
    hr, spo2, rr = int(r.integers(58, 98)), int(r.integers(91, 100)), int(r.integers(12, 20))
    temp = f"{float(r.uniform(97.6, 99.1)):.1f}"
    wt = int(r.integers(50, 115))
    if terse:
        return f"BP {bp} HR {hr} RR {rr} SpO2 {spo2}% RA T {temp}F Wt {wt}kg"
    return f"BP {bp}, HR {hr}, RR {rr}, SpO2 {spo2}% on room air, temperature {temp} F, weight {wt} kg"


def _join(items: Sequence[str | None], sep: str = "; ") -> str:
    return sep.join(i for i in items if i)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# ---------------------------------------------------------------------------------------------------------
# the five styles


def _structured(pen: _Pen) -> str:
    t, lines = pen.t, []
    upper = pen.chance(0.4)
    lines.append(pen.inst())
    lines.append(pen.pick(("Pulmonary Medicine - Outpatient Consultation", "PULMONARY NODULE CLINIC NOTE",
                           "Department of Pulmonary and Critical Care Medicine - Clinic Note")))
    lines.append("")
    lines.append(f"Patient: {pen.last_first(upper)}{' ' * 4}MRN: {pen.mrn()}")
    age, sex = _age_sex(pen, "formal")
    sex_label = "F" if t.female else "M"
    hdr_age = pen.chance(0.4) and t.age <= 89
    lines.append(f"DOB: {pen.dob()}    " + (f"Age: {t.age}    " if hdr_age else "") + f"Sex: {sex_label}")
    lines.append(f"Date of service: {pen.visit()}    Accession #: {pen.acc()}")
    lines.append(f"Referring physician: {pen.doc(pen.pick(('full', 'md')))}")
    if pen.chance(0.6):
        lines.append(f"Phone: {pen.phone()}")
    if pen.chance(0.4):
        lines.append(f"Address: {pen.address()}")
    if pen.chance(0.25):
        lines.append(f"Email: {pen.email()}")
    if pen.chance(0.15):
        lines.append(f"SSN: {pen.ssn()}")
    lines.append("")
    lines.append("CHIEF COMPLAINT: " + pen.pick(("Incidental pulmonary nodule.", "Abnormal chest CT.",
                                                 "Lung nodule found incidentally on CT.")))
    lines.append("")
    smoking = _smoking(pen, "formal")
    prior_ct = _prior_ct(pen, "formal")
    hpi = (f"HISTORY OF PRESENT ILLNESS: {pen.mr()} is a {age} {sex} referred by {pen.doc('last')} for evaluation of "
           f"an incidental pulmonary nodule found on CT obtained for {pen.pick(CT_REASONS)}. ")
    _sex_fact(pen, age, sex)
    if prior_ct:
        hpi += _prior_ct_sentence(pen, prior_ct, "The nodule is") + " "
    hpi += f"{_cap(pen.she)} denies {', '.join(SYMPTOMS[:int(pen.rng.integers(2, 6))])}."
    lines.append(hpi)
    lines.append("")
    pmh = _pmh(pen, terse=False)
    emph = _emphysema(pen, "formal")
    cancer = _prior_cancer(pen, "formal")
    lines.append("PAST MEDICAL HISTORY: " + _join([*pmh, emph, cancer], "; ") + ".")
    lines.append("MEDICATIONS: " + "; ".join(_meds(pen)) + ".")
    lines.append("ALLERGIES: " + pen.pick(("NKDA.", "Penicillin (rash).", "Sulfa drugs.", "No known drug allergies.")))
    social = f"SOCIAL HISTORY: Tobacco: {smoking}. "
    if pen.chance(0.35):
        social += f"Lives in {pen.city()} with {pen.her} {pen.relative()}. "
    social += pen.pick(("Occasional alcohol.", "No alcohol.", "Drinks socially.", "Retired teacher.",
                        "Works in construction."))
    social += _exposure(pen, "formal")
    lines.append(social)
    fam = _family(pen, "formal")
    lines.append("FAMILY HISTORY: " + (f"{fam}." if fam else "Noncontributory."))
    lines.append("")
    lines.append(f"VITALS: {_vitals(pen, terse=False)}.")
    lines.append("EXAM: Well-appearing, no acute distress. Lungs clear to auscultation bilaterally. No clubbing.")
    lines.append("")
    lines.append("ASSESSMENT AND PLAN:")
    lines.append("1. Incidental pulmonary nodule - CT images reviewed with the patient. Management per Fleischner "
                 "Society guidelines; follow-up chest CT vs PET-CT discussed.")
    if t.smoking == "current":
        lines.append("2. Tobacco use - cessation counseling provided, nicotine replacement offered.")
    lines.append(f"Return to clinic on {pen.day(pen.later(60, 200))}.")
    lines.append("")
    lines.append(f"Electronically signed by: {pen.author_sig()} on {pen.visit(NUMERIC_DATES)} "
                 f"{int(pen.rng.integers(8, 18)):02d}:{int(pen.rng.integers(0, 60)):02d}")
    return "\n".join(lines)


def _narrative(pen: _Pen) -> str:
    t, paras = pen.t, []
    head = f"{pen.inst()} - Pulmonary Clinic\n{pen.visit(WORD_DATES)}"
    paras.append(head)
    age, sex = _age_sex(pen, "formal")
    _sex_fact(pen, age, sex)
    ids = pen.pick((f"(MRN {pen.mrn()}, DOB {pen.dob()})", f"(DOB {pen.dob()}; MRN: {pen.mrn()})"))
    opener = (f"{pen.full()} {ids} is a {age} {sex} seen today at the request of {pen.doc()} for an incidental "
              f"pulmonary nodule noted on a CT obtained for {pen.pick(CT_REASONS)}.")
    prior_ct = _prior_ct(pen, "formal")
    if prior_ct:
        opener += " " + _prior_ct_sentence(pen, prior_ct, "Per the radiology report the nodule is")
    opener += f" {_cap(pen.she)} reports no {pen.pick(SYMPTOMS[:3])} or {pen.pick(SYMPTOMS[3:])}."
    paras.append(opener)
    smoking = _smoking(pen, "formal")
    fam = _family(pen, "formal")
    cancer = _prior_cancer(pen, "formal")
    emph = _emphysema(pen, "formal")
    hist = _smoking_sentence(pen, smoking)
    hist += _exposure(pen, "formal")
    if fam:
        hist += f" There is {fam}." if fam.startswith(("family", "no family")) else f" {_capf(pen, 'family_history', fam)}."
    other = _pmh(pen, terse=False)
    if emph:
        other.append(emph)
    hist += f" {_cap(pen.her)} past history includes {', '.join(other)}"
    if cancer and t.prior_cancer:
        hist += f", and {cancer}."
    elif cancer:
        hist += f". {_cap(pen.she)} {cancer}." if cancer.startswith("denies") else f". There is {cancer}."
    else:
        hist += "."
    if pen.chance(0.4):
        hist += f" {_cap(pen.she)} lives in {pen.city()} and came with {pen.her} {pen.relative()}."
    elif pen.chance(0.3):
        hist += f" {pen.mr()}'s {pen.relative()} joined us for the visit."
    hist += f" Medications: {', '.join(_meds(pen))}."
    paras.append(hist)
    paras.append(f"On examination {_vitals(pen, terse=False)}. The chest is clear and there is no "
                 f"lymphadenopathy.")
    plan = (f"I reviewed the images with {pen.mr() if pen.chance(0.7) else pen.first()} and explained that most "
            "nodules of this kind are benign. "
            "We will follow the Fleischner Society recommendations")
    plan += pen.pick((" and obtain a follow-up CT.", ", and a PET-CT may be considered.", " with surveillance CT."))
    if t.smoking == "current":
        plan += f" I strongly encouraged {pen.obj} to stop smoking."
    if pen.chance(0.5):
        plan += f" {_cap(pen.she)} can be reached at {pen.phone()}."
    if pen.chance(0.3):
        plan += f" Results will be sent to {pen.email()}."
    paras.append(plan)
    paras.append(f"{pen.author_sig()}\nPulmonary Medicine")
    return "\n\n".join(paras)


def _terse(pen: _Pen) -> str:
    t, lines = pen.t, []
    lines.append(f"PULM CLINIC {pen.visit(('us', 'us_short', 'us_2y', 'dmy_mon_upper'))}")
    upper = pen.chance(0.5)
    lines.append(f"Pt: {pen.last_first(upper)}  MRN#{pen.pick(('', ' '))}{pen.mrn()}  DOB {pen.dob(NUMERIC_DATES)}")
    lines.append(f"Ref: Dr {pen.p(pen.id.physician.split(' ', 1)[1])}"
                 + (f"  Ph {pen.phone()}" if pen.chance(0.5) else ""))
    if pen.chance(0.3):
        lines.append(f"Addr: {pen.address()}")
    lines.append("CC: " + pen.pick(("incid pulm nodule on CT", "lung nodule, incidental", "abnl CT chest - nodule")))
    age, sex = _age_sex(pen, "terse")
    _sex_fact(pen, age, sex)
    smoking = _smoking(pen, "terse")
    fam = _family(pen, "terse")
    prior_ct = _prior_ct(pen, "terse")
    hpi = f"HPI: {age} {sex} w/ incid pulm nodule on CT for {pen.pick(('abd pain', 'renal colic', 'trauma', 'CTA'))}"
    hpi += f". {smoking}."
    if prior_ct:
        hpi += " " + _prior_ct_sentence(pen, prior_ct, "Nodule")
    hpi += f" Denies {'/'.join(SYMPTOMS[:int(pen.rng.integers(2, 5))])}."
    lines.append(hpi)
    emph = _emphysema(pen, "terse")
    cancer = _prior_cancer(pen, "terse")
    lines.append("PMH: " + _join([*_pmh(pen, terse=True), emph, cancer], ", "))
    lines.append("Meds: " + ", ".join(m.split(" ")[0] for m in _meds(pen)))
    lines.append("SH: " + pen.pick(("tob as above", "see HPI")) + ", " + pen.pick(("EtOH social", "no EtOH", "no IVDU"))
                 + _exposure(pen, "terse"))
    lines.append("FH: " + (fam if fam else "noncontrib"))
    lines.append(f"VS: {_vitals(pen, terse=True)}")
    lines.append("PE: NAD, CTAB, no clubbing")
    plan = "A/P: incid pulm nodule - f/u CT per Fleischner"
    if t.smoking == "current":
        plan += ", smoking cessation counseled"
    plan += pen.pick((". RTC 3 mo.", f". RTC {pen.day(pen.later(60, 200), ('us_short', 'us'))}.", ". PFTs ordered."))
    lines.append(plan)
    lines.append(f"-- {pen.author_sig()}")
    return "\n".join(lines)


def _dictated(pen: _Pen) -> str:
    t = pen.t
    first, last = pen.author
    s = (f"This is Dr. {pen.p(first)} {pen.p(last)} dictating a pulmonary consultation on {pen.full()}, medical "
         f"record number {pen.mrn()}, date of birth {pen.dob(('long', 'us', 'ordinal'))}, date of service "
         f"{pen.visit(('spoken', 'long', 'us'))}. ")
    age, sex = _age_sex(pen, "spoken")
    _sex_fact(pen, age, sex)
    s += (f"The patient is a {age} {sex} who was referred by {pen.doc(pen.pick(('last', 'full')))} for an incidental "
          f"pulmonary nodule seen on a CT done for {pen.pick(CT_REASONS)} ")
    prior_ct = _prior_ct(pen, "spoken")
    if prior_ct:
        s += f"and the radiologist comments that {prior_ct if prior_ct.startswith(('it', 'there')) else 'it is ' + prior_ct} "
    s += f"{pen.she} denies {pen.pick(SYMPTOMS[:3])} denies {pen.pick(SYMPTOMS[3:])} "
    smoking = _smoking(pen, "spoken")
    s += f"social history {smoking} "
    s += _exposure(pen, "spoken")
    fam = _family(pen, "spoken")
    if fam:
        s += f"{fam} "
    cancer = _prior_cancer(pen, "spoken")
    emph = _emphysema(pen, "spoken")
    s += "past medical history " + ", ".join(p for p in [*_pmh(pen, terse=False), emph, cancer] if p) + " "
    s += f"medications include {', '.join(_meds(pen))} "
    if pen.chance(0.35):
        s += f"{pen.she} lives in {pen.city()} with {pen.her} {pen.relative()} "
    r = pen.rng
    s += (f"on exam blood pressure {words(int(r.integers(110, 160)))} over {words(int(r.integers(62, 95)))} "
          f"heart rate {words(int(r.integers(58, 98)))} saturating {words(int(r.integers(92, 100)))} percent on room "
          "air lungs are clear period new paragraph assessment and plan incidental pulmonary nodule we discussed the "
          "Fleischner guidelines and will obtain a follow-up CT ")
    if t.smoking == "current":
        s += "smoking cessation was discussed at length "
    if pen.chance(0.5):
        s += f"the patient's callback number is {pen.phone()} "
    s += "end of dictation."
    tail = (f"\n\nD: {pen.visit(NUMERIC_DATES)}  T: {pen.day(pen.later(1, 3), NUMERIC_DATES)}  "
            f"Job #: {pen.p(str(int(r.integers(100000, 999999))))}\n{pen.inst()}")
    return s + tail


def _letter(pen: _Pen) -> str:
    t = pen.t
    doc_first, doc_last = pen.id.physician.split(" ", 1)
    parts = [f"{pen.inst()}\nDivision of Pulmonary and Critical Care Medicine", pen.visit(("long", "dmy_long"))]
    parts.append(f"Dr. {pen.p(doc_first)} {pen.p(doc_last)}\n{pen.pick(('Family Medicine', 'Internal Medicine'))}")
    re_line = f"Re: {pen.full()}" + pen.pick((f", DOB {pen.dob()}", f" (born {pen.dob(WORD_DATES)})"))
    re_line += f"\nHospital number: {pen.mrn()}"
    parts.append(re_line)
    parts.append(f"Dear Dr. {pen.p(doc_last)},")
    age, sex = _age_sex(pen, "letter")
    _sex_fact(pen, age, sex)
    body = (f"Many thanks for referring this {age} {sex}, whom I saw in the nodule clinic on "
            f"{pen.visit(WORD_DATES)}. The CT was originally requested for {pen.pick(CT_REASONS)} and showed an "
            "incidental pulmonary nodule.")
    prior_ct = _prior_ct(pen, "letter")
    if prior_ct:
        body += {"growing": " Of note, ", "none": " Unfortunately, "}.get(t.prior_ct, " Reassuringly, ") + prior_ct + "."
    parts.append(body)
    smoking = _smoking(pen, "letter")
    fam = _family(pen, "letter")
    cancer = _prior_cancer(pen, "letter")
    emph = _emphysema(pen, "letter")
    hist = f"As regards risk factors, {smoking}."
    hist += _exposure(pen, "letter")
    if fam:
        hist += f" {_capf(pen, 'family_history', fam)}."
    if cancer:
        hist += f" Importantly, {cancer}." if t.prior_cancer else f" Reassuringly, {cancer}."
    other = _pmh(pen, terse=False)
    hist += f" {_cap(pen.she)} otherwise has {', '.join(other)}"
    hist += f" as well as {emph}." if emph else "."
    if pen.chance(0.4):
        hist += f" {_cap(pen.she)} came to clinic with {pen.her} {pen.relative()}."
    parts.append(hist)
    who = pen.mr() if pen.chance(0.6) else pen.first()  # some physicians use the first name in letters
    plan = (f"I have explained to {who} that the great majority of such nodules are benign, and I have arranged "
            f"a follow-up CT for {pen.day(pen.later(60, 200), WORD_DATES)}.")
    if t.smoking == "current":
        plan += f" I have also referred {pen.obj} to our smoking cessation service."
    plan += " I will write again once the scan has been reported."
    parts.append(plan)
    parts.append(f"{pen.pick(('Yours sincerely,', 'With kind regards,', 'Sincerely,'))}\n\n\n{pen.author_sig()}\n"
                 f"Consultant Pulmonologist\n{pen.inst()}")
    cc = f"cc: {pen.full()}, {pen.address()}"
    if pen.chance(0.5):
        cc += f" (tel. {pen.phone()})"
    parts.append(cc)
    return "\n\n".join(parts)


_WRITERS: dict[str, Callable[[_Pen], str]] = {
    "structured": _structured, "narrative": _narrative, "terse": _terse, "dictated": _dictated, "letter": _letter,
}


def write_note(truth: PatientTruth, identity: PatientIdentity, style: str, rng: np.random.Generator) -> GeneratedNote:
    """The note of one case in ``style`` (one of ``SITE_STYLES`` or ``EVAL_STYLE``), its PHI and its facts.

    Deterministic given ``rng``'s state. Raises ``ValueError`` for an unknown style.
    """
    if style not in _WRITERS:
        raise ValueError(f"unknown note style {style!r}: choose one of {', '.join(_WRITERS)}")
    pen = _Pen(rng, truth, identity)
    text = _WRITERS[style](pen)
    phi = [s for s in pen.phi if s in text]
    facts = {k: v for k, v in pen.facts.items() if v in text}
    return GeneratedNote(text=text, phi=phi, facts=facts)
