"""A corpus of synthetic notes with the facts each one states, for pretraining the note reader.

Why: a few hundred labelled notes per hospital are too few to teach a note encoder to read (measured: a
from-scratch encoder, and a bag-of-words model, stay near AUROC 0.55-0.60 against a 0.70 ceiling). Hospitals
solve this with an upstream clinical information-extraction model trained elsewhere; this corpus stands in for
that "elsewhere": notes from the same generator with a seed no cohort uses (``CORPUS_SEED``), labelled with the
facts they state (age, sex, family history, smoking, prior cancer, prior CT, emphysema), never with malignancy.
No cohort's truth file is read, and no cohort patient is in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.cohort.identity import make_identity, sample_visit_date
from workbench.cohort.notes import write_note
from workbench.cohort.sample import case_id_for, case_rng, sample_truth
from workbench.cohort.sites import default_sites
from workbench.cohort.spec import PRIOR_CT, SMOKING

CORPUS_SEED = 90_210  # never a cohort seed (cohorts use small seeds; the generator keys every case by seed)
FACTS = ("age", "female", "family_history", "smoking", "prior_cancer", "prior_ct", "emphysema_in_note")
CLASSES = {"smoking": SMOKING, "prior_ct": PRIOR_CT}  # the rest: age (regression) and binary facts


@dataclass
class NoteCorpus:
    texts: list[str]  # raw notes (PHI-like identifiers included; de-identify before reading)
    facts: dict[str, np.ndarray]  # fact -> (N,) float (age in years; class index; 0/1)


def note_corpus(n: int, seed: int = CORPUS_SEED, n_sites: int = 4) -> NoteCorpus:
    """``n`` notes spread over the default sites' styles, with their stated facts."""
    sites = default_sites(n_sites)
    texts: list[str] = []
    facts: dict[str, list[float]] = {k: [] for k in FACTS}
    i = 0
    while len(texts) < n:
        si = i % len(sites)
        site = sites[si]
        t = sample_truth(site, case_id_for(site, i), case_rng(seed, si, i, 0))
        rng = case_rng(seed, si, i, 1)
        ident = make_identity(rng, site, age=t.age, female=t.female, visit_date=sample_visit_date(rng))
        note = write_note(t, ident, str(rng.choice(site.note_styles)), rng)
        i += 1
        texts.append(note.text)
        for k in FACTS:
            v = getattr(t, k)
            facts[k].append(float(CLASSES[k].index(v)) if k in CLASSES else float(v))
    return NoteCorpus(texts, {k: np.asarray(v, dtype=np.float32) for k, v in facts.items()})
