"""The ``Case``: one patient's inputs as the prediction path sees them, and ``load_cases`` for a site folder.

A Case carries what a hospital would hand the model (series folder, a clicked nodule centre, the raw note, the
label when known) and nothing the model should infer (diameter, nodule type...). The note is raw, PHI
included: it is de-identified on its way to the model, never stored de-identified in place of the original.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import CaseError

MANIFEST_REQUIRED = ("case_id", "series_dir", "nodule_x_mm", "nodule_y_mm", "nodule_z_mm", "note_id")
SPLITS = ("train", "val", "calib", "test")


@dataclass(frozen=True)
class Case:
    """One case. ``nodule_lps_mm`` is in DICOM patient coordinates (LPS, mm), as a viewer click gives it."""

    case_id: str
    site: str
    split: str | None  # train / val / calib / test; None for cases outside a study design
    series_dir: Path | None  # folder of one CT series; None when the case has no CT
    nodule_lps_mm: tuple[float, float, float] | None
    note: str | None  # raw note text (PHI included); None when the case has no note
    label: int | None = None  # 1 malignant, 0 benign; None at inference
    note_id: str | None = None

    @property
    def has_ct(self) -> bool:
        return self.series_dir is not None

    @property
    def has_note(self) -> bool:
        return self.note is not None


def _float_or_none(value: str, what: str, case_id: str, manifest: Path) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise CaseError(f"{manifest}: case {case_id}: {what} is {value!r}, not a number") from None


def read_notes(path: Path) -> dict[str, str]:
    """note_id -> text from a notes.jsonl file; a broken line is refused with its line number."""
    notes: dict[str, str] = {}
    if not path.exists():
        return notes
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CaseError(f"{path}:{lineno}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                notes[str(rec["note_id"])] = str(rec["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CaseError(f"{path}:{lineno}: not a {{note_id, text}} JSON line ({exc.__class__.__name__})") from None
    return notes


def load_cases(site_dir: str | Path) -> list[Case]:
    """Every case of a site folder (``manifest.csv`` + ``notes.jsonl`` + ``dicom/``), in manifest order.

    Files are not opened here: a broken series is found by ingestion, which can go on with the other cases.
    A manifest that breaks the contract (missing columns, bad numbers, duplicate ids) is refused whole.
    """
    site_dir = Path(site_dir)
    manifest = site_dir / "manifest.csv"
    if not manifest.is_file():
        raise CaseError(f"{site_dir}: no manifest.csv (expected case_id, series_dir, nodule_x_mm, ... columns)")
    notes = read_notes(site_dir / "notes.jsonl")
    try:
        text = manifest.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseError(f"{manifest}: not UTF-8 text (byte {exc.start + 1})") from None
    try:
        return _manifest_cases(site_dir, manifest, text, notes)
    except csv.Error as exc:
        raise CaseError(f"{manifest}: not a readable CSV ({exc})") from None


def _manifest_cases(site_dir: Path, manifest: Path, text: str, notes: dict[str, str]) -> list[Case]:
    cases: list[Case] = []
    seen: set[str] = set()
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MANIFEST_REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise CaseError(f"{manifest}: missing column(s) {', '.join(missing)}")
        for row in reader:
            cid = (row["case_id"] or "").strip()
            if not cid:
                raise CaseError(f"{manifest}: a row has an empty case_id")
            if cid in seen:
                raise CaseError(f"{manifest}: case_id {cid} appears twice")
            seen.add(cid)
            series = (row.get("series_dir") or "").strip()
            if series and (Path(series).is_absolute() or os.path.normpath(series).split(os.sep)[0] == ".."):
                # a manifest names folders inside its own site; one that points elsewhere could read any folder
                raise CaseError(f"{manifest}: case {cid} has series_dir {series!r}, which leaves the site folder")
            xyz = [_float_or_none(row[k], k, cid, manifest) for k in ("nodule_x_mm", "nodule_y_mm", "nodule_z_mm")]
            if series and any(v is None for v in xyz):
                raise CaseError(f"{manifest}: case {cid} has a series but no complete nodule centre")
            note_id = (row.get("note_id") or "").strip() or None
            if note_id is not None and note_id not in notes:
                raise CaseError(f"{manifest}: case {cid} names note {note_id}, which notes.jsonl lacks")
            label_s = (row.get("label") or "").strip()
            if label_s not in ("", "0", "1"):
                raise CaseError(f"{manifest}: case {cid} has label {label_s!r}; expected 0, 1 or empty")
            split = (row.get("split") or "").strip() or None
            if split is not None and split not in SPLITS:
                raise CaseError(f"{manifest}: case {cid} has split {split!r}; expected one of {', '.join(SPLITS)}")
            cases.append(
                Case(
                    case_id=cid,
                    site=site_dir.name,
                    split=split,
                    series_dir=(site_dir / series) if series else None,
                    nodule_lps_mm=tuple(xyz) if series else None,  # type: ignore[arg-type]
                    note=notes[note_id] if note_id else None,
                    label=int(label_s) if label_s else None,
                    note_id=note_id,
                )
            )
    return cases


def find_case(cases: list[Case], case_id: str, where: str | Path) -> Case:
    """The case with this id, or a CaseError that names the site and a few known ids."""
    for c in cases:
        if c.case_id == case_id:
            return c
    known = ", ".join(c.case_id for c in cases[:3])
    raise CaseError(f"{where}: unknown case {case_id!r} (this site has {len(cases)} cases, e.g. {known})")


def find_site_case(site_dir: str | Path, case_id: str) -> Case:
    """The case ``case_id`` of a site folder: one lookup for the commands that take ``CASE_ID --site SITE_DIR``;
    a missing manifest or an unknown id is a CaseError naming the manifest."""
    site_dir = Path(site_dir)
    return find_case(load_cases(site_dir), case_id, site_dir / "manifest.csv")
