"""Reliability part ``deid_baseline``: our de-identifier beside philter-lite on names our lexicon lacks (issue 20).

The de-identification bench's recall of 1.000 rests partly on ``names_lexicon.txt``, which holds about 90%
of the note generator's names. Here the generator writes its usual notes in all five styles, but every
person in them is drawn from ``unseen_names`` (disjoint from the lexicon, checked in code), and the same
notes go through ``deidentify`` and through philter-lite (``philter_baseline``). Scoring is the deid
bench's own: a PHI string of a note counts as removed when no whole-token occurrence of it is left
(``leaked``); over-redaction is its share of non-PHI words lost (``lost_words``).

Figures, for each de-identifier: recall on name strings (the key) with a 95% interval bootstrapped over
notes (a note's names are not independent) and a Wilson interval; recall on name mentions (occurrences)
and on all PHI; recall by kind (patient, physician, other person) and by style; word-level precision
(share of removed words that were PHI), over-redaction, capitalised non-PHI words kept (the words a
context rule could mistake for names); a probe of eponyms, drug and anatomy names with no PHI; and a
probe of names in context-only slots (including the no-cue slot, a known limit, reported not hidden).
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.deid_bench import leaked, lost_words, note_case, phi_type
from workbench.bench.reliability.philter_baseline import load_philter
from workbench.bench.reliability.unseen_names import UnseenNames, known_parts, make_unseen_names, writing_with
from workbench.cohort.notes import ALL_STYLES
from workbench.cohort.sites import default_sites
from workbench.data.deid import NAME_LEXICON, deidentify

NOTE_SEED = 2020  # notes of this part: (NOTE_SEED, i), a different stream from the deid bench's (seed 0)
_WORD = re.compile(r"\w+")
NAME_KINDS = ("patient_name", "physician_name", "other_name")

# Clinical text with no PHI at all: eponyms, drug brands, anatomy, services. Every word lost is over-redaction.
CLINICAL_PROBE = (
    "Management per Fleischner Society guidelines; the Brock model and Herder score were calculated.",
    "No Horner syndrome. No Pancoast tumor. No Virchow node. Kerley B lines absent.",
    "History of Hodgkin lymphoma, Graves disease and Crohn disease; Raynaud phenomenon in winter.",
    "Swan-Ganz catheter removed. Foley catheter in place. Seldinger technique used.",
    "Started on Spiriva and Symbicort; continue Eliquis, Lipitor and Synthroid. Keytruda on hold.",
    "Case discussed with Tumor Board and reviewed with Interventional Radiology.",
    "Accompanied by Spanish interpreter. Seen with Thoracic Surgery.",
    "The right upper lobe nodule abuts the azygos fissure near the Eustachian valve of the IVC.",
    "Wells score low, Geneva score low; CURB-65 of 1. Mallampati class II.",
    "Referred to Pulmonary Rehabilitation and Smoking Cessation Clinic. PET-CT shows no FDG avidity.",
    "Lung-RADS 4A per ACR. Mayo Clinic model probability 12%. Glasgow Coma Scale 15.",
    "Bronchoscopy with EBUS-TBNA of station 7; ROSE adequate. Papanicolaou stain negative.",
)

# Slots where only the context says "a person": (probe, template with {g} given name and {s} surname).
CONTEXT_PROBE = (
    ("is_aged", "{g} {s} is a 64-year-old woman with an incidental nodule."),
    ("is_aged_single", "{g} is a 71 year old man seen today."),
    ("relative", "She came with her sister {g} and her son {g2}."),
    ("title", "Spoke with Mrs. {s} about the plan."),
    ("label", "Patient: {s}, {g}"),
    ("signed_by", "Electronically signed by {g} {s} at 14:02"),
    ("discussed_with", "Results discussed with {g} {s} by phone."),
    ("dicom_pn", "PatientName {S}^{G}"),
    ("no_cue", "Plan reviewed. {g} {s} agrees and will return in 3 months."),
)


@dataclass
class _Tally:
    """One de-identifier's counts; per-note arrays kept for the bootstrap over notes."""

    name_total: list[int] = field(default_factory=list)
    name_gone: list[int] = field(default_factory=list)
    phi_total: list[int] = field(default_factory=list)
    phi_gone: list[int] = field(default_factory=list)
    mentions: int = 0
    mentions_left: int = 0
    kind_total: Counter[str] = field(default_factory=Counter)
    kind_gone: Counter[str] = field(default_factory=Counter)
    style_total: Counter[str] = field(default_factory=Counter)
    style_gone: Counter[str] = field(default_factory=Counter)
    words: int = 0
    words_lost: int = 0
    removed: int = 0
    caps: int = 0
    caps_lost: int = 0
    seconds: float = 0.0
    leaks: list[dict[str, str]] = field(default_factory=list)

    def add(self, text: str, clean: str, phi: list[str], names: set[str], kinds: dict[str, str], style: str) -> None:
        nt = ng = pt = pg = 0
        for p in phi:
            gone = not leaked(p, clean)
            pt, pg = pt + 1, pg + gone
            if p.casefold() not in names:
                continue
            nt, ng = nt + 1, ng + gone
            self.kind_total[kinds[p]] += 1
            self.kind_gone[kinds[p]] += gone
            self.style_total[style] += 1
            self.style_gone[style] += gone
            pattern = r"(?<!\w)" + re.escape(p) + r"(?!\w)"
            before = len(re.findall(pattern, text, re.IGNORECASE))
            self.mentions += before
            self.mentions_left += min(before, len(re.findall(pattern, clean, re.IGNORECASE)))
            if not gone and len(self.leaks) < 8:
                self.leaks.append({"style": style, "kind": kinds[p], "name": p})
        self.name_total.append(nt)
        self.name_gone.append(ng)
        self.phi_total.append(pt)
        self.phi_gone.append(pg)
        n_words, n_lost = lost_words(text, clean, phi)
        self.words += n_words
        self.words_lost += n_lost
        self.removed += sum((Counter(_WORD.findall(text)) - Counter(_WORD.findall(clean))).values())
        n_caps, n_caps_lost = lost_words(text, clean, phi, only=lambda w: w[:1].isupper())
        self.caps += n_caps
        self.caps_lost += n_caps_lost


def _share(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson score interval of k successes in n (pooled strings, as if independent)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def bootstrap(gone: list[int], total: list[int], *, reps: int = 2000, seed: int = 0) -> list[float] | None:
    """95% percentile interval of sum(gone)/sum(total), notes resampled with replacement."""
    g, t = np.asarray(gone, dtype=float), np.asarray(total, dtype=float)
    if t.sum() == 0:
        return None
    idx = np.random.default_rng(seed).integers(0, len(t), size=(reps, len(t)))
    ratios = g[idx].sum(axis=1) / np.maximum(t[idx].sum(axis=1), 1)
    return [round(float(np.quantile(ratios, 0.025)), 4), round(float(np.quantile(ratios, 0.975)), 4)]


def _figures(t: _Tally, n_notes: int) -> dict[str, Any]:
    ng, nt = sum(t.name_gone), sum(t.name_total)
    return {
        "recall_names": _share(ng, nt),
        "recall_names_ci95_bootstrap_notes": bootstrap(t.name_gone, t.name_total),
        "recall_names_ci95_wilson": wilson(ng, nt),
        "recall_name_mentions": _share(t.mentions - t.mentions_left, t.mentions),
        "recall_all_phi": _share(sum(t.phi_gone), sum(t.phi_total)),
        "recall_all_phi_ci95_bootstrap_notes": bootstrap(t.phi_gone, t.phi_total),
        "recall_by_kind": {k: _share(t.kind_gone[k], t.kind_total[k]) for k in NAME_KINDS},
        "recall_by_style": {s: _share(t.style_gone[s], t.style_total[s]) for s in ALL_STYLES},
        "precision_words": _share(t.removed - t.words_lost, t.removed),
        "over_redaction": _share(t.words_lost, t.words),
        "capitalised_nonphi_kept": _share(t.caps - t.caps_lost, t.caps),
        "ms_per_note": round(1000 * t.seconds / max(n_notes, 1), 2),
        "leaks_example": t.leaks,
    }


def clinical_probe(clean: Callable[[str], str]) -> dict[str, Any]:
    """Words lost from PHI-free clinical sentences (eponyms, brands, anatomy, services): over-redaction."""
    words = lost = 0
    examples: list[str] = []
    for s in CLINICAL_PROBE:
        after = clean(s)
        n, k = lost_words(s, after, [])
        words, lost = words + n, lost + k
        gone = Counter(_WORD.findall(s)) - Counter(_WORD.findall(after))
        examples += sorted(gone)
    return {"words": words, "lost": lost, "kept": _share(words - lost, words), "lost_words": examples[:30]}


def context_probe(clean: Callable[[str], str], names: UnseenNames, *, per_slot: int) -> dict[str, float | None]:
    """Recall of unseen names per context-only slot (the same names for every de-identifier)."""
    rng = np.random.default_rng(NOTE_SEED + 1)
    out: dict[str, float | None] = {}
    for slot, template in CONTEXT_PROBE:
        total = gone = 0
        for _ in range(per_slot):
            g, g2, s = (names.given[int(rng.integers(len(names.given)))],
                        names.given[int(rng.integers(len(names.given)))],
                        names.surnames[int(rng.integers(len(names.surnames)))])
            fields = {"g": g, "g2": g2, "s": s, "G": g.upper(), "S": s.upper()}
            text = template.format(**fields)
            after = clean(text)
            for p in {v for k, v in fields.items() if "{" + k + "}" in template}:
                total, gone = total + 1, gone + (not leaked(p, after))
        out[slot] = _share(gone, total)
    return out


def run(*, quick: bool, work: Path, progress: bool) -> dict[str, Any]:
    """~40 notes (quick) or 1,000 (full), eight or 200 per style; see the module docstring."""
    from workbench.atomic import write_text

    start = time.perf_counter()
    names = make_unseen_names()
    write_text(work / "unseen_names.txt", "\n".join(names.all()) + "\n")
    baseline, baseline_info = load_philter()
    cleaners: dict[str, Callable[[str], str]] = {"ours": deidentify}
    if baseline is not None:
        cleaners["baseline"] = baseline
    tallies = {k: _Tally() for k in cleaners}
    folded = {n.casefold() for n in names.all()}
    in_lexicon: set[str] = set()
    n_notes = 40 if quick else 1000
    sites = default_sites(4)
    with writing_with(names):
        for i in range(n_notes):
            style = ALL_STYLES[i % len(ALL_STYLES)]
            ident, note = note_case(NOTE_SEED, i, style, sites)
            kinds = {p: phi_type(p, ident) for p in note.phi}
            in_lexicon.update(p for p in note.phi if p.casefold() in folded and known_parts(p))
            for key, clean in cleaners.items():
                t0 = time.perf_counter()
                out = clean(note.text)
                tallies[key].seconds += time.perf_counter() - t0
                tallies[key].add(note.text, out, note.phi, folded, kinds, style)
            if progress and (i + 1) % 100 == 0:
                print(f"deid_baseline: {i + 1}/{n_notes} notes", file=sys.stderr, flush=True)
    per_slot = 10 if quick else 100
    figures = {key: {**_figures(tallies[key], n_notes), "clinical_probe": clinical_probe(clean),
                     "context_probe": context_probe(clean, names, per_slot=per_slot)}
               for key, clean in cleaners.items()}
    result: dict[str, Any] = {
        "keys": {"deid_recall_unseen_names": {k: figures[k]["recall_names"] if k in figures else None
                                              for k in ("ours", "baseline")}},
        "n_notes": n_notes,
        "notes_per_style": n_notes // len(ALL_STYLES),
        "n_name_strings": sum(tallies["ours"].name_total),
        "n_name_mentions": tallies["ours"].mentions,
        "n_phi_strings": sum(tallies["ours"].phi_total),
        "recall_unit": "a name (or PHI) string of a note counts as removed when no whole-token, case-insensitive "
                       "occurrence of it is left (deid bench's leaked); mentions: occurrences left",
        "unseen_names": {
            "given": len(names.given), "surnames": len(names.surnames),
            "from_generator_not_in_lexicon": names.from_generator,
            "composed": len(names.all()) - names.from_generator, "composed_rejected": names.rejected,
            "lexicon_tokens": len(NAME_LEXICON), "name_strings_sharing_a_part_with_lexicon": len(in_lexicon),
            "how": "generator names whose every part is missing from names_lexicon.txt, plus syllable-composed "
                   "given names and surnames of nine origins (particles, O'/N'/D'/Mc/Mac, hyphens), seed "
                   "20; a name is dropped if any part (prefix stripped too) is in the lexicon or is a word the "
                   "de-identifier treats as ordinary text",
            "examples": list(names.given[::60]) + list(names.surnames[::60]),
        },
        "ours": figures["ours"],
        "baseline": figures.get("baseline"),
        "baseline_info": baseline_info,
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result

