"""Generated notes: facts stated, PHI recorded, CT-only variables never written, styles distinct, seeded."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from workbench.bench.deid_bench import leaked, run_deid_bench
from workbench.cohort.identity import age_on, make_identity
from workbench.cohort.notes import EVAL_STYLE, SITE_STYLES, GeneratedNote, write_note
from workbench.cohort.sample import sample_truth
from workbench.cohort.sites import default_sites
from workbench.cohort.spec import LOBES, PatientIdentity, PatientTruth

STYLES = (*SITE_STYLES, EVAL_STYLE)
LOBE_WORDS = ("upper lobe", "lower lobe", "middle lobe", "lingula", *LOBES)
CT_ONLY_WORDS = ("spiculat", "part-solid", "part solid", "ground-glass", "ground glass", "subsolid", "non-solid",
                 "solid", "solitary", "multiple nodules", "two nodules", "three nodules", "millimet")


def _case(i: int, style: str, seed: int = 0) -> tuple[PatientTruth, PatientIdentity, GeneratedNote]:
    rng = np.random.default_rng([seed, i])
    site = default_sites(4)[i % 4]
    truth = sample_truth(site, f"t{i}", rng)
    ident = make_identity(rng, site, age=truth.age, female=truth.female,
                          visit_date=date(2019, 1, 1) + np.timedelta64(int(rng.integers(0, 2500)), "D").item())
    return truth, ident, write_note(truth, ident, style, rng)


CASES = [(i, style) for i in range(40) for style in STYLES]


@pytest.fixture(scope="module")
def notes() -> list[tuple[str, PatientTruth, PatientIdentity, GeneratedNote]]:
    return [(style, *_case(i, style)) for i, style in CASES]


def test_facts_are_exact_phi_free_substrings(notes) -> None:
    for style, _, _, note in notes:
        assert note.facts, style
        for key, phrase in note.facts.items():
            assert key in ("age", "sex", "family_history", "smoking", "prior_cancer", "prior_ct", "emphysema")
            assert phrase in note.text, (style, key, phrase)
            for phi in note.phi:
                assert not leaked(phi, phrase), (style, key, phrase, phi)


def test_phi_strings_are_in_the_text(notes) -> None:
    for style, _truth, ident, note in notes:
        assert note.phi
        for phi in note.phi:
            assert phi in note.text, (style, phi)
        assert any(p.casefold() == ident.last_name.casefold() for p in note.phi), style


def test_note_states_the_note_variables(notes) -> None:
    for style, truth, _, note in notes:
        assert "smoking" in note.facts, style
        assert "sex" in note.facts, style
        if truth.age <= 89:
            assert "age" in note.facts, style
        if truth.family_history:
            assert "family_history" in note.facts
        if truth.prior_cancer:
            assert "prior_cancer" in note.facts
        if truth.prior_ct != "none":
            assert "prior_ct" in note.facts
        assert ("emphysema" in note.facts) == truth.emphysema_in_note
        if truth.smoking != "never":
            spelled = re.search(r"\d+ (?:pack|pk|PY)|ppd|pack year|packs? (?:per|a) day|pack-years", note.facts["smoking"])
            assert spelled, note.facts["smoking"]


def test_no_ct_only_variable_is_written(notes) -> None:
    for style, truth, _, note in notes:
        low = note.text.lower()
        assert not re.search(rf"\b{re.escape(f'{truth.diameter_mm:g}')}\s*(?:mm|cm)\b", low), style
        assert not re.search(r"\bmm\b", low), style
        for word in CT_ONLY_WORDS:
            assert word not in low, (style, word)
        for lobe in LOBE_WORDS:
            assert not re.search(rf"\b{re.escape(lobe.lower())}\b", low), (style, lobe)
        if not truth.emphysema_in_note:
            assert "copd" not in low and "emphysema" not in low, style


def test_birth_date_matches_age(notes) -> None:
    for _, truth, ident, _ in notes:
        assert age_on(ident.birth_date, ident.visit_date) == truth.age


def test_styles_differ() -> None:
    texts = {style: _case(3, style)[2].text for style in STYLES}
    assert len(set(texts.values())) == len(STYLES)
    assert "HISTORY OF PRESENT ILLNESS" in texts["structured"]
    assert "HPI:" in texts["terse"] and "PULM CLINIC" in texts["terse"]
    assert "dictating" in texts["dictated"] and "end of dictation" in texts["dictated"]
    assert texts["letter"].count("Dear Dr. ") == 1 and "Re: " in texts["letter"]
    for style in SITE_STYLES:
        assert "Dear Dr." not in texts[style] and "Re: " not in texts[style]
    # dictation spells its numbers out
    assert not re.search(r"\b\d+[- ]year", _case(3, "dictated")[2].text)


def test_deterministic_given_seed() -> None:
    for style in STYLES:
        a, b = _case(7, style)[2], _case(7, style)[2]
        assert a == b
        assert _case(7, style, seed=1)[2].text != a.text


def test_unknown_style_is_refused() -> None:
    truth, ident, _ = _case(0, "structured")
    with pytest.raises(ValueError, match="unknown note style"):
        write_note(truth, ident, "limerick", np.random.default_rng(0))


def test_very_old_patient_age_is_phi() -> None:
    truth, ident, _ = _case(5, "narrative")
    truth = replace(truth, age=93)
    for style in STYLES:
        note = write_note(truth, ident, style, np.random.default_rng(1))
        assert "age" not in note.facts
        assert any("93" in p or "ninety-three" in p for p in note.phi), style


def test_bland_note_for_a_bland_truth() -> None:
    truth, ident, _ = _case(2, "structured")
    truth = replace(truth, smoking="never", pack_years=0, family_history=False, prior_cancer=False,
                    prior_cancer_site=None, prior_ct="none", prior_ct_years=None, emphysema=False,
                    emphysema_in_note=False)
    for style in STYLES:
        note = write_note(truth, ident, style, np.random.default_rng(2))
        assert "pack" not in note.text.lower() and "ppd" not in note.text.lower()


def test_deid_bench_meets_targets() -> None:
    result = run_deid_bench(quick=True, seed=3)
    assert result["recall"] >= 0.99, result["leaks_example"]
    assert result["recall_eval_only"] >= 0.95, result["leaks_example"]
    assert result["retention"] >= 0.95
    assert set(result["recall_by_style"]) == set(STYLES)
    assert result["n_notes"] >= 5 * 90 and result["n_phi"] > result["n_notes"]
