"""The patient facts the guidelines need, read from de-identified notes by rules (``workbench.runtime.note_facts``),
against the facts the generator wrote into each note, and on phrasings written here by hand."""

from __future__ import annotations

import json

import pytest

from workbench.data.case import load_cases
from workbench.data.deid import deidentify
from workbench.runtime.note_facts import number_of, read_note_facts


def test_every_fact_the_generator_wrote_is_read_back(tiny_cohort) -> None:  # noqa: ANN001
    truth = {json.loads(line)["case_id"]: json.loads(line)
             for line in (tiny_cohort / "truth.jsonl").read_text().splitlines() if line.strip()}
    checked = 0
    for site in sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists()):
        for case in load_cases(site):
            if not case.note:
                continue
            t, f = truth[case.case_id], read_note_facts(deidentify(case.note))
            stated = t["note_facts"]
            want = {"age": t["age"] if t["age"] <= 89 else 90, "sex": t["female"], "smoking": t["smoking"],
                    "family_history": t["family_history"], "prior_cancer": t["prior_cancer"],
                    "prior_ct": t["prior_ct"].split("_")[0]}
            got = {"age": f.age, "sex": f.female, "smoking": f.smoking, "family_history": f.family_history,
                   "prior_cancer": f.prior_cancer, "prior_ct": f.prior_ct}
            for key in want:
                if key in stated:  # the note says it: it must be read right
                    assert got[key] == want[key], (case.case_id, key, stated[key], got[key])
                    checked += 1
                else:  # not among the facts the generator recorded: unknown, or a boilerplate line read right
                    assert got[key] is None or got[key] == want[key], (case.case_id, key, got[key])
            if t["smoking"] != "never":
                assert f.pack_years == pytest.approx(t["pack_years"], abs=0.6), (case.case_id, stated["smoking"])
            assert bool(f.emphysema) == t["emphysema_in_note"], case.case_id
            for key, words in f.evidence.items():  # every fact quotes the de-identified note it was read from
                assert key and " ".join(words.split()) in " ".join(deidentify(case.note).split())
    assert checked >= 40


@pytest.mark.parametrize(("note", "facts"), [
    ("72 yo F, current smoker 40 pk-yrs. FH: mother w/ lung ca. Hx breast ca (2010, mastectomy). COPD.",
     {"age": 72, "female": True, "smoking": "current", "pack_years": 40.0, "family_history": True,
      "prior_cancer": True, "emphysema": True}),
    ("The patient is a sixty-one-year-old gentleman. He has never smoked. Denies any family history of lung cancer. "
     "No personal history of malignancy.",
     {"age": 61, "female": False, "smoking": "never", "pack_years": 0.0, "family_history": False,
      "prior_cancer": False, "emphysema": None}),
    ("She is a former smoker who smoked one and a half packs per day for twenty years and quit in 2001. "
     "Nodule unchanged compared with a CT from about two and a half years ago.",
     {"female": None, "smoking": "former", "pack_years": 30.0, "prior_ct": "stable", "prior_ct_months": 30.0}),
    ("58 y.o. M, ex-smoker 1.5 ppd x 20 yrs. FHx: noncontributory. Nodule incr in size c/w CT 9 mo prior.",
     {"age": 58, "female": False, "pack_years": 30.0, "family_history": False, "prior_ct": "growing",
      "prior_ct_months": 9.0}),
    ("Nonsmoker. No prior imaging for comparison.", {"smoking": "never", "prior_ct": "none", "age": None}),
    ("", {"age": None, "smoking": None, "family_history": None}),
    ("No prior history of cancer.", {"prior_cancer": False, "prior_ct": None}),  # "no prior" is not a CT
])
def test_hand_written_phrasings(note: str, facts: dict) -> None:
    f = read_note_facts(note)
    assert {k: getattr(f, k) for k in facts} == facts


def test_number_words() -> None:
    assert [number_of(w) for w in ("61", "sixty-one", "three and a half", "one hundred ten", "twelve", "lots")] == [
        61, 61, 3.5, 110, 12, None]
