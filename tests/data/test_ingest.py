"""Ingestion: preprocessing outputs, the cache, and a batch that survives bad cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.cohort.generate import read_truth
from workbench.data import load_cases
from workbench.data.cache import PreprocessCache
from workbench.data.ingest import ingest_site
from workbench.data.preprocess import preprocess_ct
from workbench.data.transforms import PreprocessConfig


def test_patch_is_centred_on_the_nodule_and_context_sees_emphysema(tiny_cohort: Path, tmp_path: Path) -> None:
    truth = {t.case_id: t for t in read_truth(tiny_cohort)}
    cfg = PreprocessConfig()
    laa = {True: [], False: []}
    checked = 0
    for site in sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists()):
        for case in load_cases(site):
            if not case.has_ct:
                continue
            out = preprocess_ct(case, cfg)
            assert out.ct_patch.shape == (1, 32, 32, 32) and out.ct_context.shape == (2, 32, 32, 32)
            assert out.ct_patch.dtype == np.float32 and out.ct_patch.min() >= 0.0 and out.ct_patch.max() <= 1.0
            t = truth[case.case_id]
            laa[t.emphysema].append(float(out.ct_context[1].max()))
            if t.nodule_type == "solid" and t.diameter_mm >= 7:
                # solid nodule (~+30 HU -> window value ~0.74) at the centre; lung (~-860 HU -> ~0.1) far away
                centre = out.ct_patch[0, 15:17, 15:17, 15:17].mean()
                assert centre > 0.55, (case.case_id, centre)
                checked += 1
    assert checked >= 1
    if laa[True] and laa[False]:
        assert np.mean(laa[True]) > np.mean(laa[False])


def test_cache_second_pass_reads_no_dicom(tiny_site_copy: Path, tmp_path: Path) -> None:
    cache = PreprocessCache(tmp_path / "cache")
    first = ingest_site(tiny_site_copy, cache_dir=tmp_path / "cache", progress=False)
    second = ingest_site(tiny_site_copy, cache_dir=tmp_path / "cache", progress=False)
    n_ct = first.availability["ct_and_note"] + first.availability["ct_only"]
    assert first.cache_hits == 0 and second.cache_hits == n_ct
    case = next(c for c in load_cases(tiny_site_copy) if c.has_ct)
    a = preprocess_ct(case, PreprocessConfig(), cache)
    b = preprocess_ct(case, PreprocessConfig())
    assert a.cached and np.array_equal(a.ct_patch, b.ct_patch)
    # editing a slice changes the key: the stale entry is never served
    victim = sorted(Path(case.series_dir).iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert not preprocess_ct(case, PreprocessConfig(), cache).cached


def test_ingest_names_a_corrupt_file_and_goes_on(tiny_site_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = load_cases(tiny_site_copy)
    bad = next(c for c in cases if c.has_ct)
    victim = sorted(Path(bad.series_dir).iterdir())[2]
    victim.write_bytes(victim.read_bytes()[: 600])  # truncated mid-header/pixel data
    notes = tiny_site_copy / "notes.jsonl"
    recs = [json.loads(line) for line in notes.read_text().splitlines()]
    recs[0]["text"] = "   "  # an empty note
    notes.write_text("".join(json.dumps(r) + "\n" for r in recs))

    code = main(["ingest", str(tiny_site_copy), "--cache", str(tmp_path / "cache"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    assert "Traceback" not in captured.err + captured.out
    summary = json.loads(captured.out)
    assert summary["cases"] == len(cases)
    refused = {r["case_id"]: r for r in summary["refused"] if r["modality"] == "ct"}
    assert bad.case_id in refused and victim.name in refused[bad.case_id]["reason"]
    assert any(r["reason"] == "note is empty" for r in summary["refused"])
    assert summary["usable"] >= len(cases) - 1
    with (tiny_site_copy / "quarantine.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["case_id"] for r in rows} >= {bad.case_id}
    assert f"refused {bad.case_id}" in captured.err


def test_ingest_of_a_folder_without_manifest_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["ingest", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no manifest.csv" in err


def test_ingest_outputs_carry_no_phi(tiny_cohort: Path, tiny_site_copy: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    """The summary, quarantine.csv and cache entries hold geometry and reasons, never a header's or note's PHI."""
    truth = [json.loads(line) for line in (tiny_cohort / "truth.jsonl").read_text().splitlines()]
    phi = {p for t in truth if t["site"] == tiny_site_copy.name for p in t["phi"] if len(p) >= 4}
    assert phi
    victim = next(c for c in load_cases(tiny_site_copy) if c.has_ct)
    first = sorted(Path(victim.series_dir).iterdir())[0]
    first.write_bytes(b"not dicom at all")
    assert main(["ingest", str(tiny_site_copy), "--cache", str(tmp_path / "cache"), "--quiet"]) == 0
    captured = capsys.readouterr()
    blobs = [captured.out, captured.err, (tiny_site_copy / "quarantine.csv").read_text()]
    blobs += [f.read_bytes().decode("latin-1") for f in (tmp_path / "cache").rglob("*.npz")]
    for blob in blobs:
        leaked = [p for p in phi if p in blob]
        assert not leaked, leaked[:3]


def test_cache_key_is_the_content_digest_remembered_per_file_stats(tmp_path) -> None:
    from workbench.data.cache import PreprocessCache, content_digest

    files = []
    for i in range(3):
        f = tmp_path / f"s{i}.dcm"
        f.write_bytes(bytes([i]) * 1000)
        files.append(f)
    cache = PreprocessCache(tmp_path / "cache")
    key = cache.key_for(files, {"a": 1})
    assert key == content_digest(files, {"a": 1})
    assert len(list((tmp_path / "cache" / "stat").rglob("*.key"))) == 1
    assert cache.key_for(files, {"a": 1}) == key
    files[1].write_bytes(b"\x07" * 1001)  # a rewritten slice: new size and mtime, new key
    assert cache.key_for(files, {"a": 1}) == content_digest(files, {"a": 1}) != key
