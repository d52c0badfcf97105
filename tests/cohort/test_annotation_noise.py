"""Reader disagreement in the CT corpus: two simulated radiologists disagree as much as the literature says
(measured on many cases), the clean corpus is untouched by the option, and the noisy annotations sit beside the
clean truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from workbench.cohort.annotation_noise import (
    NOISY_FACTS,
    limits_of_agreement_mm,
    noisy_annotations,
    reader_sd_mm,
)
from workbench.cohort.ct_corpus import manifest_path, write_ct_corpus
from workbench.data.corpus import load_ct_corpus, phantom_inputs
from workbench.errors import WorkbenchError
from workbench.metrics import cohen_kappa

N_BAND = 7000  # cases per diameter band: 1.96 x SD is then known to about 2%


@pytest.fixture(scope="module")
def two_readers() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Clean annotations of 21,000 cases at 5, 10 and 20 mm with the corpus' type mix (78/8/15%) and 10%
    spiculated, and two simulated readers' annotations of them."""
    rng = np.random.default_rng(0)
    band = np.repeat([5.0, 10.0, 20.0], N_BAND)
    n = len(band)
    clean = {"log_diameter": np.log(band).astype(np.float32),
             "nodule_type": rng.choice(3, n, p=[0.775, 0.075, 0.15]).astype(np.float32),
             "spiculated": (rng.random(n) < 0.10).astype(np.float32)}
    return clean, noisy_annotations(clean, 77_077, reader=0), noisy_annotations(clean, 77_077, reader=1), band


def test_diameter_limits_of_agreement_match_the_stated_spread_and_grow_with_size(two_readers) -> None:  # noqa: ANN001
    clean, a, b, band = two_readers
    d0 = np.exp(clean["log_diameter"].astype(float))
    da, db = np.exp(a["log_diameter"].astype(float)), np.exp(b["log_diameter"].astype(float))
    measured = {}
    for size in (5.0, 10.0, 20.0):
        s = band == size
        measured[size] = 1.96 * float(np.std(da[s] - db[s]))  # two readers' 95% limits of agreement (half-width)
        assert measured[size] == pytest.approx(float(limits_of_agreement_mm(size)), rel=0.06), size
        err = da[s] - d0[s]  # one reader against the truth: unbiased, 1/sqrt(2) of the two readers' spread
        assert abs(float(err.mean())) < 0.05
        assert float(err.std()) == pytest.approx(float(reader_sd_mm(size)), rel=0.06)
    assert 1.5 <= measured[5.0] <= 2.0 and 1.5 <= measured[10.0] <= 2.2  # the published +-1.5-2 mm
    assert measured[5.0] < measured[10.0] < measured[20.0]  # growing with size


def test_type_and_spiculation_agreement_is_moderate_and_part_solid_the_least_reproducible(two_readers) -> None:  # noqa: ANN001
    clean, a, b, _ = two_readers
    assert cohen_kappa(a["nodule_type"], b["nodule_type"]) == pytest.approx(0.6, abs=0.05)
    changed = {k: float((a["nodule_type"][clean["nodule_type"] == k] != k).mean()) for k in range(3)}
    assert changed[1] == max(changed.values()) and changed[1] > 0.35  # part-solid most often called otherwise
    assert 0.4 <= cohen_kappa(a["spiculated"], b["spiculated"]) <= 0.65
    assert 0.0 < float((a["spiculated"] != clean["spiculated"]).mean()) < 0.1


def test_a_case_gets_the_same_annotation_whatever_the_corpus_size(two_readers) -> None:  # noqa: ANN001
    clean, a, _, _ = two_readers
    head = {k: v[:50] for k, v in clean.items()}
    again = noisy_annotations(head, 77_077, reader=0)
    for k in NOISY_FACTS:
        assert np.array_equal(again[k], a[k][:50]), k
    other = noisy_annotations(head, 12_345, reader=0)  # another corpus seed: another draw
    assert not np.array_equal(other["log_diameter"], again["log_diameter"])


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_the_option_leaves_the_clean_corpus_byte_identical_and_adds_the_noisy_annotations(tmp_path: Path) -> None:
    plain = write_ct_corpus(3, tmp_path / "off", phantom_inputs, workers=1, progress=False)
    noisy = write_ct_corpus(3, tmp_path / "on", phantom_inputs, workers=1, progress=False, annotation_noise=True)
    assert plain == manifest_path(3, tmp_path / "off") and noisy == manifest_path(3, tmp_path / "on", annotation_noise=True)
    off, on = _digests(tmp_path / "off"), _digests(tmp_path / "on")
    assert set(on) - set(off) == {noisy.name, "annotations_noisy_77077_3.npz"}
    assert all(on[name] == digest for name, digest in off.items())  # chunks and clean manifest: the same bytes

    clean_corpus, noisy_corpus = load_ct_corpus(plain), load_ct_corpus(noisy)
    assert clean_corpus.annotations is None and noisy_corpus.annotations is not None
    assert noisy_corpus.annotation_noise is not None and noisy_corpus.annotation_noise["facts"] == list(NOISY_FACTS)
    for k, v in clean_corpus.facts.items():  # the clean truth is still there, beside the noisy annotations
        assert np.array_equal(noisy_corpus.facts[k], v), k
    assert np.array_equal(noisy_corpus.ct_patch.numpy(), clean_corpus.ct_patch.numpy())
    expected = noisy_annotations(clean_corpus.facts, 77_077)
    train = noisy_corpus.training_facts(noisy=True)
    for k in NOISY_FACTS:
        assert np.array_equal(noisy_corpus.annotations[k], expected[k]), k
        assert np.array_equal(train[k], expected[k]), k
    assert not np.array_equal(train["log_diameter"], clean_corpus.facts["log_diameter"])  # a continuous error
    assert np.array_equal(train["emphysema"], clean_corpus.facts["emphysema"])  # not a noisy fact
    assert noisy_corpus.training_facts(noisy=False) is noisy_corpus.facts
    with pytest.raises(WorkbenchError, match="no noisy annotations"):
        clean_corpus.training_facts(noisy=True)
    head = json.loads(noisy.read_text())
    assert head["chunks"] == json.loads(plain.read_text())["chunks"] and head["annotations"]["noise"]["seed"]
