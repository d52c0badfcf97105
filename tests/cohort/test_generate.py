"""The cohort's file contract, determinism and resumability."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from workbench.cohort.config import CohortConfig
from workbench.cohort.generate import MANIFEST_COLUMNS, generate_cohort, read_truth
from workbench.cohort.sample import sample_site_truths
from workbench.cohort.sites import default_sites

TRUTH_ONLY = ("diameter", "nodule_type", "spicul", "lobe", "emphysema", "risk", "age", "smok")


def _sites(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "manifest.csv").exists())


def test_file_contract(tiny_cohort: Path) -> None:
    sites = _sites(tiny_cohort)
    assert len(sites) == 3
    truth = {t["case_id"]: t for t in map(json.loads, (tiny_cohort / "truth.jsonl").read_text().splitlines())}
    for site in sites:
        with (site / "manifest.csv").open() as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames) == MANIFEST_COLUMNS
            rows = list(reader)
        assert len(rows) == 8
        assert not any(k in col for col in reader.fieldnames for k in TRUTH_ONLY)
        notes = {n["note_id"]: n["text"] for n in map(json.loads, (site / "notes.jsonl").read_text().splitlines())}
        for r in rows:
            t = truth[r["case_id"]]
            assert int(r["label"]) == t["label"] and r["split"] == t["split"]
            assert bool(r["series_dir"]) == t["has_ct"] and bool(r["note_id"]) == t["has_note"]
            if t["has_ct"]:
                files = list((site / r["series_dir"]).iterdir())
                assert len(files) == t["n_slices"]
                assert t["phi"], "a case with a CT has PHI in its headers"
            if t["has_note"]:
                text = notes[r["note_id"]]
                assert any(p in text for p in t["phi"]), "the raw note carries PHI, as a hospital's does"
        card = (site / "DATA_CARD.md").read_text()
        assert "SYNTHETIC" in card and "Must not be used" in card
        # the data card holds aggregates only, never a case's PHI
        assert not any(p in card for t in truth.values() if t["site"] == site.name for p in t["phi"])


def test_written_truth_equals_sampled_truth(tiny_cohort: Path) -> None:
    """The benchmarks sample the full preset's truth without rendering; it must be what generation writes."""
    written = {t.case_id: t for t in read_truth(tiny_cohort)}
    for i, site in enumerate(default_sites(3)):
        for t in sample_site_truths(site, i, 8, seed=7):
            assert written[t.case_id] == t


def test_generation_is_deterministic_and_resumes(tmp_path: Path) -> None:
    cfg = CohortConfig(preset="tiny", sites=1, patients=3, seed=11, workers=1)
    a = generate_cohort(tmp_path / "a", cfg, progress=False)
    site = tmp_path / "a" / a.sites[0]
    manifest = (site / "manifest.csv").read_text()
    truth = (tmp_path / "a" / "truth.jsonl").read_text()
    # kill one case half-way: its row file and series are gone, a temporary folder is left behind
    rows = sorted((site / ".rows").iterdir())
    victim = json.loads(rows[0].read_text())["row"]
    rows[0].unlink()
    if victim["series_dir"]:
        shutil.rmtree(site / victim["series_dir"])
        (site / "dicom" / f".{victim['case_id']}.99999.tmp").mkdir()  # what atomic_write of a dead pid leaves
    generate_cohort(tmp_path / "a", cfg, progress=False)
    assert (site / "manifest.csv").read_text() == manifest
    assert (tmp_path / "a" / "truth.jsonl").read_text() == truth
    assert not list((site / "dicom").glob(".*"))
    # same request elsewhere: same bytes of truth
    generate_cohort(tmp_path / "b", cfg, progress=False)
    assert (tmp_path / "b" / "truth.jsonl").read_text() == truth
