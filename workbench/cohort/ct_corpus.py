"""A corpus of synthetic chest CTs with the radiologist's annotations of each nodule, for pretraining the CT reader.

Why: a few hundred labelled CTs per hospital are too few to teach a 3-D network what a nodule's size, solidity and
margin look like from a malignancy label alone (full preset: CT-only AUROC 0.80 against a 0.82 ceiling, and under DP
at epsilon 1-8 near chance; one seed on the earlier protocol's test split, which guided this choice then and is not
evidence: the figures of record are the JSONs in bench/results/ made under the protocol). Public annotated
collections exist for exactly this (LIDC-IDRI: four radiologists' diameter, texture and spiculation ratings per
nodule); this corpus stands in for one: phantoms from the cohort's own renderer and scanner profiles with a seed no
cohort uses (``CT_CORPUS_SEED``), annotated with what a radiologist reads off the image (diameter, type,
spiculation, emphysema, upper lobe), never with malignancy. No cohort's truth file is read and no cohort patient is
in it.

The corpus is data for training, which never imports this module: :func:`write_ct_corpus` writes it as files
(chunk files and a manifest; the format is documented in ``workbench.data.corpus``, which reads it). Each
phantom is rendered in memory and turned into model inputs by the ``preprocess`` function the caller passes
(``workbench.data.corpus.phantom_inputs``: the cohort may not import the data layer, and storing raw HU volumes
instead would take about 10 GB). Generated in parallel and kept in chunk files, so a killed run resumes and a
larger corpus reuses a smaller one's chunks.

With ``annotation_noise`` the corpus also carries one simulated radiologist's annotations
(``workbench.cohort.annotation_noise``: inter-reader disagreement on diameter, type and spiculation): the chunks
and the clean manifest are written exactly as without it (the noise has its own seed stream), and a second
manifest, ``ct_corpus_{seed}_{n}_noisy.json``, names the same chunks plus ``annotations_noisy_{seed}_{n}.npz``
with the noisy facts, so the clean truth stays beside them for measuring a reader against.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from workbench.atomic import atomic_write
from workbench.cohort.annotation_noise import NOISY_FACTS, noise_model, noisy_annotations
from workbench.cohort.phantom import RenderedCT
from workbench.cohort.sample import case_id_for, case_rng, sample_truth
from workbench.cohort.sites import default_sites
from workbench.cohort.spec import NODULE_TYPES, UPPER_LOBES
from workbench.jsonout import write_json

CT_CORPUS_SEED = 77_077  # never a cohort seed (cohorts use small seeds) nor the note corpus' seed
CHUNK = 50  # cases per chunk file
FACTS = ("log_diameter", "nodule_type", "spiculated", "emphysema", "upper_lobe")
CLASSES: dict[str, tuple[str, ...]] = {"nodule_type": NODULE_TYPES}  # the rest: log_diameter (regression) and binary facts

# A rendered phantom and its index nodule's centre (LPS mm) -> the arrays a chunk stores for it.
Preprocess = Callable[[RenderedCT, tuple[float, float, float]], dict[str, np.ndarray]]


def _one_case(index: int, seed: int, preprocess: Preprocess) -> dict[str, Any]:
    from workbench.cohort.generate import nodules_for
    from workbench.cohort.phantom import render_chest

    sites = default_sites(4)
    si = index % len(sites)
    site = sites[si]
    t = sample_truth(site, case_id_for(site, index), case_rng(seed, si, index, 0))
    rng = case_rng(seed, si, index, 2)
    ct = render_chest(nodules_for(t, rng), t.emphysema, site.scanner, rng)
    return {
        **preprocess(ct, ct.nodule_centers_lps[0]),
        "log_diameter": np.float32(np.log(t.diameter_mm)),
        "nodule_type": np.float32(NODULE_TYPES.index(t.nodule_type)),
        "spiculated": np.float32(t.spiculated),
        "emphysema": np.float32(t.emphysema),
        "upper_lobe": np.float32(t.lobe in UPPER_LOBES),
    }


def _chunk_task(args: tuple[int, int, int, str, Preprocess]) -> int:
    start, stop, seed, path, preprocess = args
    rows = [_one_case(i, seed, preprocess) for i in range(start, stop)]
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    with atomic_write(path) as tmp:  # a killed run leaves no half chunk, so resuming trusts every chunk file
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
    return stop - start


def manifest_path(n: int, out_dir: str | Path, seed: int = CT_CORPUS_SEED, annotation_noise: bool = False) -> Path:
    """Where :func:`write_ct_corpus` puts the manifest of ``n`` cases of ``seed`` (``annotation_noise``: the
    manifest that adds the noisy annotations)."""
    return Path(out_dir) / f"ct_corpus_{seed}_{n}{'_noisy' if annotation_noise else ''}.json"


def write_ct_corpus(n: int, out_dir: str | Path, preprocess: Preprocess, seed: int = CT_CORPUS_SEED, *,
                    workers: int = 2, progress: bool = True, annotation_noise: bool = False) -> Path:
    """``n`` annotated phantoms into ``out_dir`` (chunks generated once; a killed run resumes); returns the manifest
    that ``workbench.data.corpus.load_ct_corpus`` reads. ``preprocess`` must be a module-level function (spawned
    workers receive it by name). ``annotation_noise``: also write one simulated radiologist's annotations and
    return the manifest that adds them (the clean files are the same either way; module docstring)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks = [(s, min(s + CHUNK, n), seed, str(out / f"chunk_{seed}_{s:06d}_{min(s + CHUNK, n):06d}.npz"), preprocess)
              for s in range(0, n, CHUNK)]
    todo = [c for c in chunks if not Path(c[3]).exists()]
    bar = tqdm(total=n, initial=n - sum(c[1] - c[0] for c in todo), desc="CT corpus", unit="case",
               disable=not progress)
    if workers > 1 and len(todo) > 1:
        # spawned, not forked: a process that already ran torch (OpenMP threads) can deadlock its forked children
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for k in pool.map(_chunk_task, todo):
                bar.update(k)
    else:
        for c in todo:
            bar.update(_chunk_task(c))
    bar.close()
    manifest = manifest_path(n, out, seed)
    write_json(manifest, {"kind": "ct_corpus", "format": 1, "seed": seed, "n": n, "facts": list(FACTS),
                          "classes": {k: list(v) for k, v in CLASSES.items()},
                          "chunks": [Path(c[3]).name for c in chunks]})
    return _add_noisy_annotations(manifest, n, out, seed) if annotation_noise else manifest


def _add_noisy_annotations(manifest: Path, n: int, out: Path, seed: int) -> Path:
    """The noisy annotations of the clean corpus ``manifest`` names, computed from its clean facts (no phantom is
    rendered again), and the manifest that adds them."""
    head = json.loads(manifest.read_text(encoding="utf-8"))
    clean: dict[str, list[np.ndarray]] = {k: [] for k in NOISY_FACTS}
    for name in head["chunks"]:
        with np.load(out / name) as z:
            for k in NOISY_FACTS:
                clean[k].append(z[k])
    noisy = noisy_annotations({k: np.concatenate(v) for k, v in clean.items()}, seed)
    file = out / f"annotations_noisy_{seed}_{n}.npz"
    with atomic_write(file) as tmp:
        np.savez(tmp, **noisy)  # type: ignore[arg-type]
    path = manifest_path(n, out, seed, annotation_noise=True)
    write_json(path, {**head, "annotations": {"file": file.name, "facts": list(NOISY_FACTS), "noise": noise_model()}})
    return path


__all__ = ["CLASSES", "CT_CORPUS_SEED", "FACTS", "manifest_path", "write_ct_corpus"]
