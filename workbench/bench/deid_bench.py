"""``workbench bench deid``: how much PHI de-identification removes, and how much clinical signal it keeps.

Notes are generated in every style from sampled truths (no cohort on disk needed): the four site styles the
de-identifier was developed against, and ``EVAL_STYLE`` (a letter), which no site uses, as the held-out
check. Each note comes with the PHI strings the generator placed and the PHI-free phrases that state its
facts, so both sides are scored exactly:

- **recall**: share of PHI strings gone from the de-identified text. A string counts as leaked when it still
  appears verbatim, case-insensitively, as a whole token run (not inside a longer word: the surname "Li"
  is not leaked by "lisinopril").
- **retention**: share of fact phrases ("30 pack-years", "denies family history of lung cancer") still present
  verbatim: what the model needs survives.
- **over_redaction**: share of the note's non-PHI words (every PHI string masked out first) that are missing
  from the de-identified text: clinical words mistaken for names, times eaten with dates.

The generator and the de-identifier were written side by side, so these figures are an upper bound for
real notes; the held-out letter style and the generator's rarer names (not in the de-identifier's lexicon)
are there to keep them honest.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from workbench.bench.common import envelope
from workbench.cohort.notes import EVAL_STYLE, SITE_STYLES, GeneratedNote, write_note
from workbench.cohort.sample import sample_truth
from workbench.cohort.sites import default_sites
from workbench.cohort.spec import PatientIdentity, SiteProfile
from workbench.data.deid import deidentify

ALL_STYLES = (*SITE_STYLES, EVAL_STYLE)
_WORD = re.compile(r"\w+")
_DATE_LIKE = re.compile(r"\d{1,4}[/\-.]\d{1,2}|January|February|March|April|May|June|July|August|September|"
                        r"October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Oct|Nov|Dec", re.I)


def leaked(phi: str, text: str) -> bool:
    """Does ``phi`` still appear in ``text`` verbatim (case-insensitive), not as part of a longer word?"""
    return re.search(r"(?<!\w)" + re.escape(phi) + r"(?!\w)", text, re.IGNORECASE) is not None


def phi_type(phi: str, ident: PatientIdentity) -> str:
    """Which kind of identifier a PHI string is, for the per-type recall and the leak examples."""
    exact = {ident.mrn: "mrn", ident.accession: "accession", ident.phone: "phone", ident.email: "email",
             ident.street: "street", ident.city: "city", ident.zip_code: "zip", ident.ssn: "ssn",
             ident.institution: "institution"}
    if phi in exact:
        return exact[phi]
    low = phi.casefold()
    if low in (ident.first_name.casefold(), ident.last_name.casefold()):
        return "patient_name"
    if low in (p.casefold() for p in ident.physician.split(" ", 1)):
        return "physician_name"
    if re.search(r"year|yo\b|y/o", phi):
        return "age_over_89"
    if _DATE_LIKE.search(phi) and any(ch.isdigit() for ch in phi):
        return "date"
    if phi.isdigit():
        return "id"
    return "other_name"  # note author, relatives


def lost_words(text: str, clean: str, phi: list[str], only: Callable[[str], bool] | None = None) -> tuple[int, int]:
    """(non-PHI words in ``text``, how many of them are missing from ``clean``), as multisets of words; ``only``
    narrows both counts to some words (the capitalised ones: clinical words a name rule could mistake)."""
    masked = text
    for p in sorted(phi, key=len, reverse=True):
        masked = re.sub(r"(?<!\w)" + re.escape(p) + r"(?!\w)", " ", masked, flags=re.IGNORECASE)
    before, after = Counter(_WORD.findall(masked)), Counter(_WORD.findall(clean))
    if only is not None:
        before = Counter({w: c for w, c in before.items() if only(w)})
    return sum(before.values()), sum((before - after).values())


def run_deid_bench(*, quick: bool = False, seed: int = 0) -> dict:
    """Generate ~100 (quick) or ~400 notes per style, de-identify them, score recall and retention."""
    start = time.perf_counter()
    per_style = 100 if quick else 400
    sites = default_sites(4)
    phi_total: dict[str, int] = defaultdict(int)
    phi_gone: dict[str, int] = defaultdict(int)
    fact_total: dict[str, int] = defaultdict(int)
    fact_kept: dict[str, int] = defaultdict(int)
    type_total: dict[str, int] = defaultdict(int)
    type_gone: dict[str, int] = defaultdict(int)
    leaks: list[dict] = []
    deid_s, n_notes, words, words_lost = 0.0, 0, 0, 0
    for j in range(per_style):
        for si, style in enumerate(ALL_STYLES):
            i = j * len(ALL_STYLES) + si  # quick is a prefix of full, style by style
            ident, note = note_case(seed, i, style, sites)
            t0 = time.perf_counter()
            clean = deidentify(note.text)
            deid_s += time.perf_counter() - t0
            n_notes += 1
            for phi in note.phi:
                kind = phi_type(phi, ident)
                gone = not leaked(phi, clean)
                phi_total[style] += 1
                phi_gone[style] += gone
                if style != EVAL_STYLE:
                    type_total[kind] += 1
                    type_gone[kind] += gone
                if not gone and len(leaks) < 5:
                    leaks.append({"style": style, "type": kind, "phi": phi})
            n_words, n_lost = lost_words(note.text, clean, note.phi)
            words += n_words
            words_lost += n_lost
            for phrase in note.facts.values():
                fact_total[style] += 1
                fact_kept[style] += phrase in clean

    def share(num: int, den: int) -> float:
        return round(num / den, 4) if den else 1.0

    site_gone = sum(phi_gone[s] for s in SITE_STYLES)
    site_total = sum(phi_total[s] for s in SITE_STYLES)
    return {
        "recall": share(site_gone, site_total),
        "recall_eval_only": share(phi_gone[EVAL_STYLE], phi_total[EVAL_STYLE]),
        "recall_by_style": {s: share(phi_gone[s], phi_total[s]) for s in ALL_STYLES},
        "recall_by_type": {k: share(type_gone[k], type_total[k]) for k in sorted(type_total)},
        "retention": share(sum(fact_kept.values()), sum(fact_total.values())),
        "retention_by_style": {s: share(fact_kept[s], fact_total[s]) for s in ALL_STYLES},
        "over_redaction": round(words_lost / max(words, 1), 5),
        "n_notes": n_notes,
        "n_phi": sum(phi_total.values()),
        "n_facts": sum(fact_total.values()),
        "deid_ms_per_note": round(1000 * deid_s / max(n_notes, 1), 2),
        "leaks_example": leaks,
        **envelope("deid-quick" if quick else "deid", time.perf_counter() - start),
    }


def note_case(seed: int, i: int, style: str, sites: Sequence[SiteProfile]) -> tuple[PatientIdentity, GeneratedNote]:
    """Case ``i``'s identity and note in ``style``, seeded by ``(seed, i)`` alone, so that another bench (the
    reliability bench's unseen-name notes) writes its notes the same way."""
    rng = np.random.default_rng([seed, i])
    site = sites[i % len(sites)]
    truth = sample_truth(site, f"deid_{i:05d}", rng)
    ident = _identity(rng, site, truth.age, truth.female)
    return ident, write_note(truth, ident, style, rng)


def _identity(rng: np.random.Generator, site: SiteProfile, age: int, female: bool) -> PatientIdentity:
    from workbench.cohort.identity import make_identity, sample_visit_date

    return make_identity(rng, site, age=age, female=female, visit_date=sample_visit_date(rng))
