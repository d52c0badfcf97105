"""Issue 20: de-identification on names our lexicon lacks, beside an outside baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.bench.deid_bench import leaked, note_case
from workbench.bench.reliability import deid_baseline
from workbench.bench.reliability.unseen_names import known_parts, make_unseen_names, writing_with
from workbench.cohort import identity, notes
from workbench.cohort.notes import ALL_STYLES
from workbench.cohort.sites import default_sites
from workbench.data.deid import NAME_LEXICON, _fold, deidentify


def test_unseen_names_are_disjoint_from_the_lexicon_and_seeded() -> None:
    names = make_unseen_names()
    assert len(names.given) >= 300 and len(names.surnames) >= 300
    for name in names.all():
        assert not known_parts(name), name
        assert _fold(name) not in NAME_LEXICON
    assert make_unseen_names() == names  # the same list every run
    assert any(" " in s for s in names.surnames) and any("'" in s for s in names.surnames)
    assert any("-" in s for s in names.surnames) and any(s.startswith("Mc") for s in names.surnames)


def test_generator_is_restored_after_writing_with_unseen_names() -> None:
    before = identity.person_name, notes.person_name
    with writing_with(make_unseen_names()):
        assert notes.person_name is not before[1]
    assert (identity.person_name, notes.person_name) == before


def test_recall_on_unseen_names_small_set() -> None:
    names = make_unseen_names()
    folded = {n.casefold() for n in names.all()}
    sites = default_sites(4)
    total = gone = 0
    with writing_with(names):
        for i in range(20):
            _, note = note_case(deid_baseline.NOTE_SEED, i, ALL_STYLES[i % len(ALL_STYLES)], sites)
            clean = deidentify(note.text)
            for p in note.phi:
                if p.casefold() in folded:
                    total, gone = total + 1, gone + (not leaked(p, clean))
    assert total >= 80  # every note names its patient, a physician and an author
    assert gone / total >= 0.97


@pytest.mark.parametrize("text,name", [
    ("Ottavndu Scaetti is a 64-year-old woman with a nodule.", "Ottavndu"),
    ("Nwanachi is a 71 year old man seen today.", "Nwanachi"),
    ("Results discussed with Eulae Mukhacharya by phone.", "Mukhacharya"),
    ("PatientName KRASINSKI^THALKO^M", "THALKO"),
    ("Mr. van der Prozhak returned; Dr. Anami de la Shirahara agrees.", "Shirahara"),
    ("Pt: ter Otinachi, Thalko  MRN#K-227-381", "Otinachi"),
])
def test_name_known_only_by_context_is_redacted(text: str, name: str) -> None:
    assert not known_parts(name)  # not a lexicon name: only the context gives it away
    assert not leaked(name, deidentify(text))


def test_context_rules_keep_clinical_words() -> None:
    probe = deid_baseline.clinical_probe(deidentify)
    assert probe["kept"] >= 0.97, probe["lost_words"]
    assert "Fleischner" not in probe["lost_words"] and "Horner" not in probe["lost_words"]


def test_run_has_the_named_keys_and_survives_a_missing_baseline(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deid_baseline, "load_philter", lambda: (None, {"reason": "not installed (test)"}))
    out = deid_baseline.run(quick=True, work=tmp_path, progress=False)
    key = out["keys"]["deid_recall_unseen_names"]
    assert key["ours"] >= 0.97 and key["baseline"] is None
    assert out["baseline"] is None and out["baseline_info"]["reason"]
    assert out["n_notes"] == 40 and out["n_name_strings"] > 100
    assert out["unseen_names"]["name_strings_sharing_a_part_with_lexicon"] == 0
    assert out["ours"]["precision_words"] >= 0.95 and out["ours"]["recall_names_ci95_wilson"][1] == 1.0


def test_philter_baseline_runs_offline_when_installed() -> None:
    pytest.importorskip("philter_lite")
    clean, info = deid_baseline.load_philter()
    assert clean is not None, info.get("reason")
    out = clean("Ms. Ottavndu Scaetti (MRN 00482913) was seen 03/14/2024.")
    assert not leaked("Scaetti", out) and not leaked("03/14/2024", out)
