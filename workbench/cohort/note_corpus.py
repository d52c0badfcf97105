"""A corpus of synthetic notes with the facts each one states, for pretraining the note reader; and the text the
note tokenizer's vocabulary is learned from.

Why: a few hundred labelled notes per hospital are too few to teach a note encoder to read (a from-scratch encoder,
and a bag-of-words model, stayed near AUROC 0.55-0.60 against a 0.70 ceiling: one seed on the earlier protocol's
test split, which guided this choice then and is not evidence; the figures of record are the JSONs in bench/results/
made under the protocol, README "How the figures are made"). Hospitals solve this with an upstream clinical
information-extraction model trained elsewhere; this corpus stands in for that "elsewhere": notes from the same
generator with a seed no cohort uses (``CORPUS_SEED``), labelled with the facts they state (age, sex, family
history, smoking, prior cancer, prior CT, emphysema), never with malignancy. No cohort's truth file is read, and no
cohort patient is in it.

Training never imports this module: :func:`write_note_corpus` writes the corpus as a JSON-lines file (format in
``workbench.data.corpus``, which reads it), and :func:`vocabulary_corpus` is written once into the file the
tokenizer ships with (``workbench/models/vocab_corpus.json``; a test keeps the two equal).
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

from workbench.atomic import write_text
from workbench.cohort import notes
from workbench.cohort.identity import make_identity, sample_visit_date
from workbench.cohort.notes import write_note
from workbench.cohort.sample import case_id_for, case_rng, sample_truth
from workbench.cohort.sites import default_sites
from workbench.cohort.spec import PRIOR_CT, SMOKING

CORPUS_SEED = 90_210  # never a cohort seed (cohorts use small seeds; the generator keys every case by seed)
FUSION_NOTE_SEED = CORPUS_SEED + 1  # the fusion's pretraining notes: beside the note reader's, notes it has not read
FACTS = ("age", "female", "family_history", "smoking", "prior_cancer", "prior_ct", "emphysema_in_note")
CLASSES = {"smoking": SMOKING, "prior_ct": PRIOR_CT}  # the rest: age (regression) and binary facts


def note_rows(n: int, seed: int = CORPUS_SEED, n_sites: int = 4) -> list[tuple[str, dict[str, float]]]:
    """``n`` notes spread over the default sites' styles, each with its stated facts (class facts as indices)."""
    sites = default_sites(n_sites)
    rows: list[tuple[str, dict[str, float]]] = []
    i = 0
    while len(rows) < n:
        si = i % len(sites)
        site = sites[si]
        t = sample_truth(site, case_id_for(site, i), case_rng(seed, si, i, 0))
        rng = case_rng(seed, si, i, 1)
        ident = make_identity(rng, site, age=t.age, female=t.female, visit_date=sample_visit_date(rng))
        note = write_note(t, ident, str(rng.choice(site.note_styles)), rng)
        i += 1
        facts = {}
        for k in FACTS:
            v = getattr(t, k)
            facts[k] = float(CLASSES[k].index(v)) if k in CLASSES else float(v)
        rows.append((note.text, facts))
    return rows


def write_note_corpus(n: int, out_dir: str | Path, seed: int = CORPUS_SEED) -> Path:
    """``n`` notes as ``out_dir/notes_{seed}_{n}.jsonl`` (written once, atomically; reused when there), for
    ``workbench.data.corpus.load_note_corpus``."""
    path = Path(out_dir) / f"notes_{seed}_{n}.jsonl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    head = {"kind": "note_corpus", "format": 1, "seed": seed, "n": n, "facts": list(FACTS),
            "classes": {k: list(v) for k, v in CLASSES.items()}}
    lines = [json.dumps(head)] + [json.dumps({"text": text, "facts": facts}) for text, facts in note_rows(n, seed)]
    write_text(path, "\n".join(lines) + "\n")
    return path


def vocabulary_corpus() -> list[str]:
    """Every string literal of the note generator's source (``workbench/cohort/notes.py``): templates and word
    lists, never a generated note, so no patient-like string can become a token. Sorted and deduplicated (the
    tokenizer trainer reads a set). Docstrings are left out: they explain code with examples ("her husband,
    Carlos") and are no template."""
    tree = ast.parse(inspect.getsource(notes))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return sorted({node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings})


def write_vocabulary_corpus(path: str | Path) -> Path:
    """:func:`vocabulary_corpus` as a JSON list, one string a line (what ``workbench.models.tokenizer`` ships)."""
    write_text(path, json.dumps(vocabulary_corpus(), indent=0, ensure_ascii=False) + "\n")
    return Path(path)


__all__ = ["CLASSES", "CORPUS_SEED", "FACTS", "FUSION_NOTE_SEED", "note_rows", "vocabulary_corpus",
           "write_note_corpus", "write_vocabulary_corpus"]


if __name__ == "__main__":  # regenerate the shipped vocabulary corpus after changing the note templates
    print(write_vocabulary_corpus(Path(__file__).parents[1] / "models" / "vocab_corpus.json"))
