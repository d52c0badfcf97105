"""The note reader's corpus as a file, and the tokenizer's shipped vocabulary corpus: both come from the note
generator, and neither the tokenizer nor training reads the generator itself."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from workbench.cohort.note_corpus import (
    CLASSES,
    CORPUS_SEED,
    FACTS,
    note_rows,
    vocabulary_corpus,
    write_note_corpus,
)
from workbench.data.corpus import load_note_corpus
from workbench.errors import WorkbenchError
from workbench.models import tokenizer

# sha256 of json.dumps(the list the WordPiece trainer read), measured with the tokenizer that read
# workbench/cohort/notes.py as a file, before the vocabulary moved into the shipped vocab_corpus.json
OLD_TRAINING_TEXT = "acd94be713d2de90"


def test_shipped_vocabulary_corpus_is_what_the_generator_gives_today() -> None:
    """If this fails, the note templates changed: regenerate the file (``python -m workbench.cohort.note_corpus``),
    rebuild the tokenizer and retrain the readers."""
    shipped = json.loads(tokenizer.VOCAB_CORPUS.read_text(encoding="utf-8"))
    assert shipped == vocabulary_corpus()
    assert tokenizer.VOCAB_CORPUS.parent == tokenizer.TOKENIZER_DIR.parent  # inside the package (package-data)


def test_the_tokenizer_learns_from_the_same_text_as_before() -> None:
    text = tokenizer.training_text()
    assert hashlib.sha256(json.dumps(text).encode()).hexdigest()[:16] == OLD_TRAINING_TEXT
    vocab = tokenizer.load_tokenizer().get_vocab()  # the shipped vocabulary: its words come from that text
    words = " ".join(text).lower()
    assert all(t in words for t in vocab if not t.startswith(("##", "[")) and len(t) > 1)


def test_a_broken_vocabulary_corpus_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "vocab_corpus.json"
    bad.write_text('{"not": "a list"}', encoding="utf-8")
    monkeypatch.setattr(tokenizer, "VOCAB_CORPUS", bad)
    with pytest.raises(WorkbenchError, match="vocab_corpus.json: not a JSON list"):
        tokenizer.training_text()


def test_note_corpus_file_round_trips_and_is_reused(tmp_path: Path) -> None:
    path = write_note_corpus(12, tmp_path)
    corpus = load_note_corpus(path)
    rows = note_rows(12)
    assert corpus.texts == [t for t, _ in rows] and len(corpus) == 12
    assert list(corpus.facts) == list(FACTS) and corpus.classes == CLASSES and corpus.seed == CORPUS_SEED
    for k in FACTS:
        assert corpus.facts[k].dtype == np.float32
        assert np.array_equal(corpus.facts[k], np.asarray([f[k] for _, f in rows], dtype=np.float32))
    stamp = path.stat().st_mtime_ns
    assert write_note_corpus(12, tmp_path) == path and path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".*"))  # no temporary left beside it


def test_a_truncated_note_corpus_is_refused_by_name(tmp_path: Path) -> None:
    path = write_note_corpus(3, tmp_path)
    path.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(WorkbenchError, match=rf"{path.name}: header names 3 notes, the file holds 2"):
        load_note_corpus(path)
    other = tmp_path / "x.jsonl"
    other.write_text('{"kind": "ct_corpus", "format": 1}\n', encoding="utf-8")
    with pytest.raises(WorkbenchError, match="x.jsonl: not a note_corpus file"):
        load_note_corpus(other)
