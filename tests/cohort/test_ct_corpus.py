"""The CT reader's corpus: in-memory phantoms must be what the cohort's DICOM path gives, annotated truly, and
read back by the data layer as written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.cohort.ct_corpus import CLASSES, CT_CORPUS_SEED, FACTS, manifest_path, write_ct_corpus
from workbench.cohort.dicom_writer import write_ct_series
from workbench.cohort.generate import nodules_for
from workbench.cohort.identity import make_identity, sample_visit_date
from workbench.cohort.phantom import render_chest
from workbench.cohort.sample import case_rng, sample_truth
from workbench.cohort.sites import default_sites
from workbench.data.corpus import CTCorpus, load_ct_corpus, phantom_image, phantom_inputs
from workbench.data.dicom_io import load_ct_series
from workbench.data.transforms import PreprocessConfig, ct_pipeline, lps_to_ras
from workbench.errors import WorkbenchError


def test_in_memory_phantom_equals_its_dicom_round_trip(tmp_path: Path) -> None:
    """Same HU, same affine, same model inputs as writing the series and reading it back (the cohort's path)."""
    site = default_sites(4)[1]
    truth = sample_truth(site, "c", case_rng(5, 1, 3, 0))
    rng = case_rng(5, 1, 3, 2)
    ct = render_chest(nodules_for(truth, rng), truth.emphysema, site.scanner, rng)
    ident_rng = np.random.default_rng(0)
    ident = make_identity(ident_rng, site, age=truth.age, female=truth.female, visit_date=sample_visit_date(ident_rng))
    write_ct_series(tmp_path, ct, site.scanner, ident, uid_seed="t")
    img, ref = phantom_image(ct), load_ct_series(tmp_path)
    assert img.shape == ref.shape
    assert np.array_equal(img.numpy(), ref.numpy())
    assert np.allclose(img.affine.numpy(), ref.affine.numpy())
    point = lps_to_ras(ct.nodule_centers_lps[0])
    a = ct_pipeline(PreprocessConfig(), load=False)({"image": img, "nodule_ras": point})
    b = ct_pipeline(PreprocessConfig())({"image": str(tmp_path), "nodule_ras": point})
    for key in ("ct_patch", "ct_context", "ct_position"):
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


def ct_corpus(n: int, out: Path, workers: int = 1) -> CTCorpus:
    return load_ct_corpus(write_ct_corpus(n, out, phantom_inputs, workers=workers, progress=False))


def test_corpus_is_annotated_from_its_own_truth_and_resumes(tmp_path: Path) -> None:
    corpus = ct_corpus(3, tmp_path)
    assert len(corpus) == 3 and list(corpus.facts) == list(FACTS)
    assert corpus.classes == CLASSES and corpus.seed == CT_CORPUS_SEED
    sites = default_sites(4)
    for i in range(3):  # the annotation is the sampled truth of the same seed stream
        t = sample_truth(sites[i % 4], f"{sites[i % 4].name}_{i:04d}", case_rng(CT_CORPUS_SEED, i % 4, i, 0))
        assert abs(float(np.exp(corpus.facts["log_diameter"][i])) - t.diameter_mm) < 1e-3
        assert corpus.facts["spiculated"][i] == float(t.spiculated)
    assert corpus.ct_patch.shape[1:] == (1, 32, 32, 32) and corpus.ct_context.shape[1:] == (2, 32, 32, 32)
    files = sorted(tmp_path.glob("chunk_*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = ct_corpus(3, tmp_path)  # resumed: nothing re-rendered
    assert files[0].stat().st_mtime_ns == stamp
    assert np.array_equal(again.ct_patch.numpy(), corpus.ct_patch.numpy())


def test_parallel_corpus_after_torch_has_run(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001 - pytest fixture
    """The demo renders the corpus after training the note reader: forked workers of a process whose OpenMP
    threads are running deadlocked; spawned ones must finish and match the sequential result."""
    import torch

    import workbench.cohort.ct_corpus as cc

    torch.ones(256, 256) @ torch.ones(256, 256)  # start torch's thread pool in this process
    monkeypatch.setattr(cc, "CHUNK", 1)  # two chunks, so the pool is used
    par = ct_corpus(2, tmp_path / "par", workers=2)
    seq = ct_corpus(2, tmp_path / "seq", workers=1)
    assert np.array_equal(par.ct_patch.numpy(), seq.ct_patch.numpy())
    assert np.array_equal(par.facts["log_diameter"], seq.facts["log_diameter"])


def test_a_corpus_that_lost_a_chunk_is_refused_by_name(tmp_path: Path) -> None:
    manifest = write_ct_corpus(2, tmp_path, phantom_inputs, workers=1, progress=False)
    assert manifest == manifest_path(2, tmp_path)
    next(tmp_path.glob("chunk_*.npz")).unlink()
    with pytest.raises(WorkbenchError, match="chunk_.*missing or unreadable"):
        load_ct_corpus(manifest)
    with pytest.raises(WorkbenchError, match="manifest not found"):
        load_ct_corpus(tmp_path / "nope.json")
