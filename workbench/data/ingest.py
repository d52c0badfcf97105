"""Check and preprocess every case of a site: what a node operator runs before training.

A bad case never stops the batch: each refusal is recorded with its file and reason in ``quarantine.csv`` and
the JSON summary, and the other cases go on. A case is usable when at least one modality is.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workbench.atomic import atomic_write
from workbench.data.cache import PreprocessCache, default_cache_dir
from workbench.data.case import Case, load_cases
from workbench.data.preprocess import preprocess_ct
from workbench.data.transforms import PreprocessConfig
from workbench.errors import WorkbenchError

MAX_NOTE_CHARS = 100_000  # longer "notes" are almost always a pasted document or a broken export
QUARANTINE_COLUMNS = ("case_id", "modality", "path", "reason")


@dataclass
class Refusal:
    case_id: str
    modality: str  # "ct", "note", or "case" (neither given)
    path: str
    reason: str


@dataclass
class IngestReport:
    site: str
    n_cases: int = 0
    usable: list[str] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    availability: dict[str, int] = field(default_factory=lambda: {"ct_and_note": 0, "ct_only": 0, "note_only": 0, "none": 0})
    in_plane_mm: list[float] = field(default_factory=list)
    slice_mm: list[float] = field(default_factory=list)
    n_slices: int = 0
    cache_hits: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        def stats(v: list[float]) -> dict | None:
            if not v:
                return None
            a = np.asarray(v)
            return {"min": round(float(a.min()), 3), "median": round(float(np.median(a)), 3), "max": round(float(a.max()), 3)}

        unusable = sorted({r.case_id for r in self.refusals} - set(self.usable))
        return {
            "site": self.site,
            "cases": self.n_cases,
            "usable": len(self.usable),
            "unusable": unusable,
            "refused": [r.__dict__ for r in self.refusals],
            "modalities": self.availability,
            "spacing_mm": {"in_plane": stats(self.in_plane_mm), "slice": stats(self.slice_mm)},
            "slices": self.n_slices,
            "cache_hits": self.cache_hits,
            "seconds": round(self.seconds, 2),
        }


def check_note(case: Case) -> str | None:
    """The reason a present note cannot be used, or None."""
    if case.note is None:
        return None
    if not case.note.strip():
        return "note is empty"
    if len(case.note) > MAX_NOTE_CHARS:
        return f"note is {len(case.note):,} characters, over the {MAX_NOTE_CHARS:,} limit"
    return lone_surrogate_reason(case.note)


def lone_surrogate_reason(text: str) -> str | None:
    """Why ``text`` is not valid Unicode when it holds a lone surrogate (a JSON ``\\ud800`` escape decodes to
    one; no UTF-8 encoder or tokenizer takes it), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"note is not valid Unicode (a lone surrogate at character {exc.start + 1})"
    return None


def ingest_site(
    site_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    config: PreprocessConfig | None = None,
    quarantine_path: str | Path | None = None,
    progress: bool = True,
) -> IngestReport:
    """Check every case of ``site_dir``, fill the cache, write ``quarantine.csv``; return the report."""
    start = time.perf_counter()
    site_dir = Path(site_dir)
    cases = load_cases(site_dir)
    cache = PreprocessCache(cache_dir if cache_dir is not None else default_cache_dir())
    report = IngestReport(site=site_dir.name, n_cases=len(cases))
    for case in tqdm(cases, desc=f"ingest {site_dir.name}", unit="case", disable=not progress):
        ct_ok = False
        if case.has_ct:
            try:
                inputs = preprocess_ct(case, config, cache)
                ct_ok = True
                report.cache_hits += inputs.cached
                report.in_plane_mm.append(inputs.spacing_mm[0])
                report.slice_mm.append(inputs.spacing_mm[2])
                report.n_slices += inputs.n_slices
            except WorkbenchError as exc:
                report.refusals.append(Refusal(case.case_id, "ct", str(case.series_dir), str(exc)))
        note_reason = check_note(case)
        if note_reason:
            report.refusals.append(Refusal(case.case_id, "note", f"notes.jsonl#{case.note_id}", note_reason))
        note_ok = case.has_note and note_reason is None
        if not case.has_ct and not case.has_note:  # listed, or the summary's counts would lose the case
            report.refusals.append(Refusal(case.case_id, "case", "manifest.csv", "no series_dir and no note_id"))
        bucket = {(True, True): "ct_and_note", (True, False): "ct_only", (False, True): "note_only", (False, False): "none"}
        report.availability[bucket[(ct_ok, note_ok)]] += 1
        if ct_ok or note_ok:
            report.usable.append(case.case_id)
    report.seconds = time.perf_counter() - start
    write_quarantine(Path(quarantine_path) if quarantine_path else site_dir / "quarantine.csv", report.refusals)
    return report


def write_quarantine(path: Path, refusals: list[Refusal]) -> None:
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=QUARANTINE_COLUMNS)
        w.writeheader()
        w.writerows(r.__dict__ for r in refusals)
