"""Score one quiet study and carry it to ``done/`` or ``quarantine/``, one recorded stage at a time.

Stages (``inbox.STAGES``), each written to ``work/<key>/state.json`` before the next begins:

1. **scored**: the CT series, the radiologist's mark (an SR with a point, or a SEG, in the same study; not one of
   this service's own report SRs) and the note (``notes_dir/<AccessionNumber>.txt|.json``; without one the CT
   alone is read and the result says so) go through ``workbench predict`` (the same code, so the same number),
   which writes the four reports in clinical mode (identifiers kept: they go to the hospital's own PACS and EHR).
2. **stored**: the SR is sent to the PACS by C-STORE.
3. **stowed**: and by STOW-RS when ``stow_url`` is set.
4. **fhir**: the FHIR Bundle is written to the outbox (always) and POSTed when ``[service.fhir] url`` is set.

A refusal of the study itself (no CT, no mark, a mark outside the volume, an unreadable file, a note that is
not a note) quarantines it with the reason; a PACS or EHR that does not answer leaves it in ``work/`` to be sent
again after ``retry_s`` (``Outcome.retry``); anything unexpected quarantines the study too, and the service goes on.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.atomic import write_bytes, write_text
from workbench.errors import CaseError, WorkbenchError
from workbench.service.config import ServiceConfig
from workbench.service.inbox import Inbox, reached, read_state, write_state
from workbench.service.outbound import DeliveryError, c_store, post_fhir, stow_rs

OWN_SR_MANUFACTURER = "nodule-workbench"  # report SRs this service wrote are not marks


@dataclass
class Outcome:
    key: str
    status: str  # "done" | "quarantine" | "retry"
    detail: str = ""
    result: dict[str, Any] | None = None


def find_mark(others: dict[str, list[Path]]) -> Path:
    """The radiologist's mark among a study's non-CT files: an SR that is not a workbench report, else a SEG."""
    import pydicom

    for f in sorted(others.get("SR", [])):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            if not str(ds.get("Manufacturer", "")).startswith(OWN_SR_MANUFACTURER):
                return f
        except Exception:  # noqa: BLE001 - an unreadable SR is not a mark; the study's error names what was found
            continue
    segs = sorted(others.get("SEG", []))
    if segs:
        return segs[0]
    found = ", ".join(f"{m} ({len(v)})" for m, v in sorted(others.items())) or "the CT series only"
    raise CaseError(f"no nodule mark in the study (an SR with a point or a SEG from the radiologist; found {found})")


def find_note(notes_dir: Path, accession: str) -> Path | None:
    """The note dropped for this accession number (``<accession>.txt`` or ``.json``), or None."""
    if not accession:
        return None
    safe = "".join(c for c in accession if c.isalnum() or c in "-_.")
    for ext in (".txt", ".json"):
        p = notes_dir / f"{safe}{ext}"
        if p.is_file():
            return p
    return None


def process(cfg: ServiceConfig, inbox: Inbox, work: Path, audit: Callable[[dict[str, Any]], None]) -> Outcome:
    """Carry ``work`` (a study folder in work/) as far as it goes now (module docstring)."""
    key = work.name
    state = read_state(work)
    meta = json.loads((work / "study.json").read_text(encoding="utf-8")) if (work / "study.json").is_file() else {}
    if not reached(state, "scored"):
        if inbox.already_done("-".join(key.split("-")[:2])) is not None:  # key, or key-n for a second copy
            return _quarantine(inbox, work, "this study was scored before (done/ holds it; its SR is in the PACS): "
                               "move that folder away to score it again", "score", audit)
        t = time.perf_counter()
        try:
            result = _score(cfg, work, meta)
        except WorkbenchError as exc:
            return _quarantine(inbox, work, str(exc), "score", audit)
        except Exception as exc:  # noqa: BLE001 - one bad study never stops the service; its reason is kept
            return _quarantine(inbox, work, f"unexpected {type(exc).__name__}: {exc}", "score", audit)
        write_text(work / "result.json", json.dumps(result, indent=1) + "\n")
        write_state(work, "scored")
        audit({"event": "scored", "study": key, "probability": round(float(result["probability"]), 4),
               "ms": round(1000 * (time.perf_counter() - t))})
    state = read_state(work)
    sr = work / "reports" / "report_sr.dcm"
    try:
        if not reached(state, "stored"):
            t = time.perf_counter()
            c_store(sr, cfg.pacs, cfg.ae_title)
            write_state(work, "stored", store_ms=round(1000 * (time.perf_counter() - t), 1))
            audit({"event": "stored", "study": key, "to": f"{cfg.pacs.ae_title}@{cfg.pacs.host}:{cfg.pacs.port}"})
        if not reached(read_state(work), "stowed"):
            if cfg.pacs.stow_url:
                stow_rs(sr, cfg.pacs.stow_url)
                audit({"event": "stowed", "study": key})
            write_state(work, "stowed")
        if not reached(read_state(work), "fhir"):
            bundle = cfg.fhir_outbox / f"{key}.json"
            bundle.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(bundle, (work / "reports" / "report_fhir.json").read_bytes())
            if cfg.fhir_url:
                post_fhir(bundle, cfg.fhir_url)
                audit({"event": "fhir_posted", "study": key})
            write_state(work, "fhir")
    except DeliveryError as exc:
        audit({"event": "delivery_failed", "study": key, "why": str(exc)})
        return Outcome(key, "retry", str(exc))
    except Exception as exc:  # noqa: BLE001 - scored and kept: a local fault (disk, permissions) is retried too
        why = f"unexpected {type(exc).__name__} while delivering: {exc}"
        audit({"event": "delivery_failed", "study": key, "why": why})
        return Outcome(key, "retry", why)
    note = meta.get("note_file")
    if note and Path(note).is_file():  # the dropped note is consumed: kept with the study, node-local
        shutil.move(note, work / f"note{Path(note).suffix}")
    done = inbox.finish(work)
    audit({"event": "done", "study": key})
    result = json.loads((done / "result.json").read_text(encoding="utf-8"))
    return Outcome(key, "done", str(done), result)


def _score(cfg: ServiceConfig, work: Path, meta: dict[str, Any]) -> dict[str, Any]:
    from workbench.report.study import StudyRequest, predict_study
    from workbench.runtime.fast import has_fast
    from workbench.runtime.study import scan_study

    study = scan_study(work / "dicom")
    mark = find_mark(study.others)
    note = find_note(cfg.notes_dir, str(meta.get("accession", "")))
    if note is not None:
        meta["note_file"] = str(note)
        write_text(work / "study.json", json.dumps(meta) + "\n")
    result = predict_study(StudyRequest(cfg.run, work / "dicom", nodule_from=mark, note=note, site=cfg.site,
                                        report=work / "reports", clinical=True, node_dir=cfg.node_dir,
                                        steps=cfg.steps, fast=cfg.fast and has_fast(cfg.run), study=study))
    if note is None:
        result["notes"].append("no note in the drop folder for this study's accession number: the CT alone was read")
    result.pop("files", None)
    return result


def _quarantine(inbox: Inbox, work: Path, reason: str, stage: str,
                audit: Callable[[dict[str, Any]], None]) -> Outcome:
    dst = inbox.quarantine(work, reason, stage)
    reason = reason.replace(str(work), str(dst))
    audit({"event": "quarantined", "study": work.name, "stage": stage, "reason": reason})
    return Outcome(work.name, "quarantine", reason)


__all__ = ["Outcome", "find_mark", "find_note", "process"]
