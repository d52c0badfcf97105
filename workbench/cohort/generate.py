"""Write a synthetic multi-hospital cohort to disk (the file contract of docs/architecture.md §5).

Per case, three seeded streams (truth, identity + note, image) make the case independent of every other, so
generation runs in parallel and a killed run resumes: a case whose series folder and row file exist is done.
Each series is written to a hidden temporary folder and renamed, so a half-written series never looks done.
A ``shifted`` cohort (``--truth shifted``, ``risk_shifted.py``) adds a fourth stream for its own variables and
renders / writes them; a brock cohort never touches that stream, so it is what it was before that truth existed,
and its request in ``cohort.json`` names no truth (old brock folders still resume).

OUT/
  truth.jsonl                 every true variable, risk, label and the PHI strings of each case
  <site>/manifest.csv         case_id, series_dir, nodule_x_mm, nodule_y_mm, nodule_z_mm, note_id, label, split
  <site>/notes.jsonl          {"note_id", "text"}: raw notes, PHI included, as a hospital holds them
  <site>/dicom/<case_id>/     one CT Image Storage file per slice, PHI in the headers
  <site>/DATA_CARD.md         what this site's data is and is not
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workbench.atomic import atomic_write, sweep_leftovers, write_text
from workbench.cohort.config import CohortConfig
from workbench.cohort.data_card import write_site_card
from workbench.cohort.sample import case_id_for, case_rng, case_truth
from workbench.cohort.sites import default_sites
from workbench.cohort.spec import LOBES, NoduleSpec, PatientIdentity, PatientTruth, SiteProfile
from workbench.errors import CohortError

MANIFEST_COLUMNS = ("case_id", "series_dir", "nodule_x_mm", "nodule_y_mm", "nodule_z_mm", "note_id", "label", "split")
_ROWS_DIR = ".rows"  # per-case row files: the resume markers, outside the series folders


@dataclass
class CohortSummary:
    out: Path
    sites: list[str]
    n_cases: int
    seconds: float
    bytes_on_disk: int


def sites_for(config: CohortConfig) -> list[SiteProfile]:
    sites = default_sites(config.n_sites)
    if config.transfer_syntax:
        sites = [replace(s, scanner=replace(s.scanner, transfer_syntax=config.transfer_syntax)) for s in sites]
    return sites


def nodules_for(truth: PatientTruth, rng: np.random.Generator) -> list[NoduleSpec]:
    """The index nodule from the truth plus (count - 1) small, smooth, solid incidental nodules."""
    index = NoduleSpec(truth.diameter_mm, truth.nodule_type, truth.spiculated, truth.lobe, is_index=True,
                       bubbly_lucency=truth.bubbly_lucency)
    extra = [
        NoduleSpec(round(float(rng.uniform(3.0, 5.5)), 1), "solid", False, str(rng.choice(LOBES)))
        for _ in range(truth.nodule_count - 1)
    ]
    return [index, *extra]


def case_identity(site: SiteProfile, site_index: int, case_index: int, seed: int, truth: PatientTruth
                  ) -> tuple[PatientIdentity, np.random.Generator]:
    """One case's identity exactly as ``make_case`` draws it, and its stream (the note is drawn from it next):
    the PHI scan (``bench reliability --part phi_scan``) rebuilds every patient's facts from it, field by field,
    to search for each in the formats it could leak in."""
    from workbench.cohort.identity import make_identity, sample_visit_date

    rng = case_rng(seed, site_index, case_index, 1)
    return make_identity(rng, site, age=truth.age, female=truth.female, visit_date=sample_visit_date(rng)), rng


def make_case(site: SiteProfile, site_index: int, case_index: int, seed: int, site_dir: Path,
              truth_name: str = "brock") -> dict:
    """Sample, render and write one case; return its manifest row, note and truth record."""
    from workbench.cohort.dicom_writer import dicom_phi_strings, write_ct_series
    from workbench.cohort.notes import write_note
    from workbench.cohort.phantom import render_chest

    cid = case_id_for(site, case_index)
    truth = case_truth(site, site_index, case_index, seed, truth_name)
    identity, rng_note = case_identity(site, site_index, case_index, seed, truth)
    style = str(rng_note.choice(site.note_styles))
    note = write_note(truth, identity, style, rng_note) if truth.has_note else None

    row: dict = {"case_id": cid, "series_dir": "", "nodule_x_mm": "", "nodule_y_mm": "", "nodule_z_mm": "",
                 "note_id": "", "label": truth.label, "split": truth.split}
    phi: list[str] = list(note.phi) if note else []
    extra: dict = {"note_style": style if note else None, "note_facts": note.facts if note else {}}
    if truth.has_ct:
        rng_img = case_rng(seed, site_index, case_index, 2)
        ct = render_chest(nodules_for(truth, rng_img), truth.emphysema, site.scanner, rng_img)
        final = site_dir / "dicom" / cid
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(final) as tmp:
            tmp.mkdir()
            write_ct_series(tmp, ct, site.scanner, identity, uid_seed=f"{seed}:{cid}")
        x, y, z = ct.nodule_centers_lps[0]
        row.update(series_dir=f"dicom/{cid}", nodule_x_mm=f"{x:.2f}", nodule_y_mm=f"{y:.2f}", nodule_z_mm=f"{z:.2f}")
        phi += dicom_phi_strings(identity)
        extra.update(
            nodule_center_lps=[round(v, 2) for v in (x, y, z)],
            n_slices=int(ct.hu.shape[0]),
            pixel_spacing_mm=ct.pixel_spacing_mm,
            slice_spacing_mm=ct.slice_spacing_mm,
            transfer_syntax=site.scanner.transfer_syntax,
        )
    if note:
        row["note_id"] = f"{site.name}-n{case_index:05d}"
    truth_rec = {**asdict(truth), **extra, "phi": sorted(set(phi))}
    return {"row": row, "note": {"note_id": row["note_id"], "text": note.text} if note else None, "truth": truth_rec}


def _case_task(args: tuple[SiteProfile, int, int, int, str, str]) -> tuple[str, int]:
    site, site_index, case_index, seed, site_dir, truth_name = args
    rec = make_case(site, site_index, case_index, seed, Path(site_dir), truth_name)
    rows = Path(site_dir) / _ROWS_DIR
    rows.mkdir(exist_ok=True)
    write_text(rows / f"{rec['row']['case_id']}.json", json.dumps(rec))
    return site.name, case_index


def _pending(sites: list[SiteProfile], out: Path, n: int, seed: int, truth: str
             ) -> Iterator[tuple[SiteProfile, int, int, int, str, str]]:
    for si, site in enumerate(sites):
        site_dir = out / site.name
        for ci in range(n):
            if not (site_dir / _ROWS_DIR / f"{case_id_for(site, ci)}.json").exists():
                yield site, si, ci, seed, str(site_dir), truth


def generate_cohort(out: str | Path, config: CohortConfig, *, progress: bool = True) -> CohortSummary:
    """Generate (or finish generating) the cohort ``config`` describes into ``out``."""
    start = time.perf_counter()
    out = Path(out)
    sites = sites_for(config)
    for site in sites:
        (out / site.name / "dicom").mkdir(parents=True, exist_ok=True)
        sweep_leftovers(out / site.name / "dicom")  # a killed run's half-written series
    stamp = out / "cohort.json"
    request = {"preset": config.preset, "sites": [s.name for s in sites], "patients_per_site": config.n_patients,
               "seed": config.seed, "transfer_syntax": config.transfer_syntax}
    if config.truth != "brock":  # brock requests stay as they were, so brock folders made before still resume
        request["truth"] = config.truth
    if stamp.exists() and (held := json.loads(stamp.read_text())["request"]) != request:
        if held.get("truth", "brock") != config.truth:
            raise CohortError(f"{out}: holds a cohort of the {held.get('truth', 'brock')} truth, not {config.truth}; "
                              "choose an empty folder")
        raise CohortError(f"{out}: holds a different cohort ({stamp.name} differs); choose an empty folder")
    tasks = list(_pending(sites, out, config.n_patients, config.seed, config.truth))
    bar = tqdm(total=len(sites) * config.n_patients, initial=len(sites) * config.n_patients - len(tasks),
               desc="cohort", unit="case", disable=not progress)
    if config.workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            for _ in pool.map(_case_task, tasks, chunksize=1):
                bar.update()
    else:
        for task in tasks:
            _case_task(task)
            bar.update()
    bar.close()

    truths: list[dict] = []
    for site in sites:
        truths += _write_site_files(out / site.name, site, config.n_patients, config.truth)
    write_text(out / "truth.jsonl", "".join(json.dumps(t) + "\n" for t in truths))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    seconds = time.perf_counter() - start
    write_text(stamp, json.dumps({"request": request, "n_cases": len(truths), "bytes": size}, indent=2))
    return CohortSummary(out, [s.name for s in sites], len(truths), seconds, size)


def _write_site_files(site_dir: Path, site: SiteProfile, n: int, truth: str) -> list[dict]:
    recs = [json.loads((site_dir / _ROWS_DIR / f"{case_id_for(site, i)}.json").read_text()) for i in range(n)]
    with atomic_write(site_dir / "manifest.csv") as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(r["row"] for r in recs)
    write_text(site_dir / "notes.jsonl", "".join(json.dumps(r["note"]) + "\n" for r in recs if r["note"]))
    write_site_card(site_dir, site, [r["truth"] for r in recs], truth)
    return [r["truth"] for r in recs]


def read_truth(out: str | Path) -> list[PatientTruth]:
    """Truth records of a generated cohort as ``PatientTruth`` (benchmarks and cohort tests only)."""
    fields = set(PatientTruth.__dataclass_fields__)
    with open(Path(out) / "truth.jsonl", encoding="utf-8") as f:
        return [PatientTruth(**{k: v for k, v in json.loads(line).items() if k in fields}) for line in f if line.strip()]
