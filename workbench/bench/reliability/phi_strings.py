"""Every PHI string of a cohort's truth, in every format the same fact could leak in: what the PHI scan searches.

``truth.jsonl`` holds each case's PHI exactly as the generator wrote it into the note and the DICOM headers. A leak
need not keep that form: a name written "Last^First" in a header can leave as "First Last", a date written
20211003 as "10/3/2021", an MRN "A-448-201" as "A448201". So each patient's identity is drawn again from the
cohort's seed (``cohort.generate.case_identity``: the very draw the generator made, checked against the truth
here) and every fact is expanded into its formats. The truth's own strings (the note's authors, relatives, other
dates) are added as written.

Search is case-insensitive, so strings are kept lower-cased: "JANSEN^HAO" and "Jansen^Hao" are one string.
Strings too short or too common to identify anyone are skipped, and counted by reason: under 4 characters ("Li",
"Wu": a name that short turns up inside ordinary text; the full name and "Dr. Li" are still searched), bare
numbers under 7 digits (a 5-digit ZIP code or an MRN without its leading zeros: counters, byte sizes, ports and
PIDs match one by chance; ZIP+4 and "City, ST 01103" are still searched), the phone line without its area code
(the fictional 555-01xx range: 100 values the whole cohort shares), and names that are ordinary words of English,
Python or statistics (``COMMON_WORDS``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.cohort.spec import PatientIdentity

MIN_CHARS = 4
MIN_DIGITS = 7  # a bare number shorter than this is skipped (see the module docstring)
# Names of the generator's lists that are also words a log, a notebook's code, a metric name or a tokenizer's
# vocabulary holds: "elif" (a Python keyword and a Turkish name), the Wilson score interval, Cohen's kappa, a car
# park, river banks, a tree walker, and "ling" (a word piece of "sibling": the note reader's vocabulary has it,
# as it has "li"; no other name of the generator's lists is in it).
COMMON_WORDS = frozenset({"elif", "wilson", "cohen", "park", "banks", "walker", "ling"})
DATE_FORMATS = ("us", "us_short", "us_2y", "us_dash", "long", "abbr", "iso", "dmy_mon", "dmy_long", "spoken",
                "ordinal")  # the note generator's (``cohort.notes.fmt_date``); more below


@dataclass
class PhiStrings:
    """The strings searched ({lower-cased string: kind}) and those skipped ({reason: count})."""

    kinds: dict[str, str] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_strings: dict[str, str] = field(default_factory=dict)  # {string: reason}, for the figures' examples
    cases: int = 0
    cohorts: list[str] = field(default_factory=list)

    def add(self, s: str, kind: str) -> None:
        """Keep ``s`` (lower-cased) unless it is too short or common; the first kind given for a string stays."""
        s = " ".join(s.split()).lower()
        why = skip_reason(s)
        if why:
            if s not in self.skipped_strings and s not in self.kinds:
                self.skipped_strings[s] = why
                self.skipped[why] += 1
            return
        self.kinds.setdefault(s, kind)

    def merge(self, other: PhiStrings) -> None:
        for s, k in other.kinds.items():
            self.kinds.setdefault(s, k)
        for s, why in other.skipped_strings.items():
            if s not in self.skipped_strings:
                self.skipped_strings[s] = why
                self.skipped[why] += 1
        self.cases += other.cases
        self.cohorts += other.cohorts

    def by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(self.kinds.values()).items()))


def skip_reason(s: str) -> str:
    """Why ``s`` (lower-cased) is not searched, or "" when it is."""
    if len(s) < MIN_CHARS:
        return f"under {MIN_CHARS} characters"
    if s.isdigit() and len(s) < MIN_DIGITS:
        return f"a bare number under {MIN_DIGITS} digits"
    if re.fullmatch(r"555[-. ]?01\d\d", s):
        return "a phone line without its area code (555-01xx: shared by the cohort)"
    if s in COMMON_WORDS:
        return "an ordinary word of English, Python or statistics, or a word piece"
    return ""


def ascii_fold(s: str) -> str:
    """"Müller" -> "Muller": how an ASCII-only system writes an accented name."""
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()


def name_variants(first: str, last: str, *, title: str) -> list[str]:
    """A person's name in the forms a record, a header or a log writes it (each also accent-free)."""
    forms = [first, last, f"{first} {last}", f"{last}, {first}", f"{last},{first}", f"{last}^{first}",
             f"{last} {first}", f"{first[0]}. {last}", f"{title} {last}"]
    return list(dict.fromkeys([*forms, *(ascii_fold(f) for f in forms)]))


def date_variants(d: date) -> list[str]:
    """A date as the notes write it (``cohort.notes.fmt_date``), as DICOM writes it, and in the other common orders."""
    from workbench.cohort.notes import fmt_date

    more = [d.strftime("%Y%m%d"), f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}", f"{d.day:02d}/{d.month:02d}/{d.year}",
            f"{d.day:02d}.{d.month:02d}.{d.year}", f"{d.year}/{d.month:02d}/{d.day:02d}", f"{d.month}-{d.day}-{d.year}",
            f"{d.day} {d.strftime('%b')} {d.year}", f"{d.strftime('%b')} {d.day} {d.year}"]
    return list(dict.fromkeys([*(fmt_date(d, f) for f in DATE_FORMATS), *more]))


def digits_variants(s: str) -> list[str]:
    """An identifier as written, without its separators, and (all digits) without leading zeros."""
    bare = re.sub(r"[^0-9A-Za-z]", "", s)
    out = [s, bare]
    if bare.isdigit():
        out.append(bare.lstrip("0"))
    return list(dict.fromkeys(out))


def phone_variants(phone: str) -> list[str]:
    digits = re.sub(r"\D", "", phone)[-10:]
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return list(dict.fromkeys([phone, digits, f"1{digits}", f"+1{digits}", f"{a}-{b}-{c}", f"({a}) {b}-{c}",
                               f"({a}){b}-{c}", f"{a}.{b}.{c}", f"{a} {b} {c}", f"+1 {a} {b} {c}", f"1-{a}-{b}-{c}",
                               f"{b}-{c}"]))


def identity_strings(i: PatientIdentity, out: PhiStrings) -> None:
    """Every fact of one patient's identity in its formats, each with its kind."""
    from workbench.cohort.identity import CITY_STATE

    for s in name_variants(i.first_name, i.last_name, title="Mr." if i.sex == "M" else "Ms."):
        out.add(s, "name")
    for t in ("Mrs.", "Mr", "Ms", "Mrs"):
        out.add(f"{t} {i.last_name}", "name")
    doc_first, _, doc_last = i.physician.partition(" ")
    for s in name_variants(doc_first, doc_last, title="Dr."):
        out.add(s, "name")
    out.add(f"Dr {doc_last}", "name")
    for d in (i.birth_date, i.visit_date):
        for s in date_variants(d):
            out.add(s, "date")
    for s in digits_variants(i.mrn):
        out.add(s, "mrn")
    for s in digits_variants(i.accession):
        out.add(s, "accession")
    for s in phone_variants(i.phone):
        out.add(s, "phone")
    ssn = i.ssn
    for s in (ssn, ssn.replace("-", ""), ssn.replace("-", " ")):
        out.add(s, "ssn")
    out.add(i.email, "email")
    street, city, zip_code = i.street, i.city, i.zip_code
    state = CITY_STATE.get(city, "")
    for s in (street, ascii_fold(street), f"{street}, {city}", city, zip_code, f"{city}, {state}",
              f"{city}, {state} {zip_code}", f"{state} {zip_code}", f"{street}, {city}, {state} {zip_code}"):
        out.add(s, "address")
    out.add(i.institution, "institution")


def guess_kind(s: str) -> str:
    """The kind of a truth string the identity did not give (the note's authors, relatives, other dates)."""
    low = s.lower()
    if re.search(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}", s) or re.search(
            r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b", low):
        return "date"
    if "year" in low or re.search(r"\d+\s*y", low):
        return "age_over_89"
    if any(ch.isdigit() for ch in s):
        return "identifier"
    return "name"


def cohort_phi(cohort: Path) -> PhiStrings:
    """Every PHI string of ``cohort`` (its truth, each identity's formats), with kinds and the skipped ones."""
    from workbench.bench.common import cohort_config, cohort_request
    from workbench.cohort.dicom_writer import dicom_phi_strings
    from workbench.cohort.generate import case_identity, sites_for
    from workbench.cohort.sample import case_truth

    cohort = Path(cohort)
    r = cohort_request(cohort)
    config = cohort_config(r["preset"], int(r["seed"]), r["truth"], sites=len(r["sites"]),
                           patients=int(r["patients_per_site"]), transfer_syntax=r.get("transfer_syntax"))
    sites = {s.name: (k, s) for k, s in enumerate(sites_for(config))}
    out = PhiStrings(cohorts=[cohort.name])
    for line in (cohort / "truth.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        k, site = sites[rec["site"]]
        index = int(rec["case_id"].rsplit("_", 1)[1])
        ident, _ = case_identity(site, k, index, config.seed, case_truth(site, k, index, config.seed, config.truth))
        if rec.get("series_dir") or rec.get("n_slices"):
            missing = set(dicom_phi_strings(ident)) - set(rec["phi"])
            if missing:
                raise WorkbenchError(f"{cohort}: case {rec['case_id']}'s identity drawn again differs from its truth "
                                     f"(missing {len(missing)} strings): the generator changed; regenerate the cohort")
        identity_strings(ident, out)
        for s in rec["phi"]:
            out.add(s, guess_kind(s))
        out.cases += 1
    return out


__all__ = ["COMMON_WORDS", "PhiStrings", "cohort_phi", "date_variants", "guess_kind", "identity_strings",
           "name_variants", "skip_reason"]
