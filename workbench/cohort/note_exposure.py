"""The shifted truth's notes-only risk factor as text: one sentence about an occupational asbestos exposure.

Only a case whose truth has an ``asbestos_job`` (a shifted cohort's; ``risk_shifted.py``) gets the sentence, in
the place where its note style puts the social history. Writing it draws no random number, so the rest of the
note is word for word the brock case's note of the same seed.

Why these templates are not in ``notes.py``: the note tokenizer's vocabulary is learned from every string literal
of that file (``note_corpus.vocabulary_corpus``, shipped as ``workbench/models/vocab_corpus.json``; a test keeps
the two equal), and the note reader is pretrained on brock notes. Kept here, the tokenizer and the readers stay
exactly as they were, and the sentence is something the readers were never taught, which is what the shifted
truth is for.
"""

from __future__ import annotations

from workbench.cohort.spec import PatientTruth

EXPOSURE_FACT = "asbestos"  # key of the sentence's phrase in a note's ``facts``


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def exposure_insert(truth: PatientTruth, register: str, she: str) -> tuple[str, str | None]:
    """(text to append to the social history, the fact phrase inside it); ``("", None)`` without an exposure.

    ``register`` is the note's (``notes.py``): formal, terse, spoken (dictation: no punctuation) or letter."""
    job = truth.asbestos_job
    if job is None:
        return "", None
    if register == "terse":
        fact = f"asbestos exp ({job})"
        return f", {fact}", fact
    if register == "spoken":
        fact = f"{she} was exposed to asbestos working as {_a(job)}"
        return f"{fact} ", fact
    if register == "letter":
        fact = f"{she.capitalize()} was exposed to asbestos for many years as {_a(job)}"
        return f" {fact}.", fact
    fact = f"Occupational asbestos exposure as {_a(job)}"
    return f" {fact}.", fact
