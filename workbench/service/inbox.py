"""Where every study the service received is, on disk, so that a killed service loses nothing and sends nothing
twice when it starts again.

A study lives in exactly one folder of ``NODE_DIR/service/`` at a time, and moves between them by rename::

    incoming/<key>/dicom/<instance key>.dcm     the listener writes here (each file atomically)
    incoming/<key>/study.json                   accession number, calling AE (node-local; never logged)
    work/<key>/                                 taken by the worker once the study was quiet for quiet_s
    work/<key>/state.json                       how far it got: scored -> stored -> stowed -> fhir
    work/<key>/reports/                         the four reports (written as one folder, atomically)
    done/<key>/                                 finished: reports, result.json, the SR sent
    quarantine/<key>[-n]/reason.json            refused, with the reason; its files kept for a person to look at

``<key>`` is the study's pseudonym (``study-`` + 12 hex digits of an HMAC of the StudyInstanceUID with the node's
secret), so folder names, logs and the audit chain never carry the UID or the accession number.

A restart finds ``work/`` folders and carries each on from its ``state.json``: a study not yet scored is scored
again (nothing had left the node), one scored but not stored sends the SR it already wrote (the same SOP Instance
UID, which a PACS stores once), and so on. Only the worker moves folders out of ``incoming`` and ``work``, under
one lock shared with the listener, so a file never lands in a folder that is being moved.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.atomic import sweep_leftovers, write_text

STAGES = ("received", "scored", "stored", "stowed", "fhir")  # in order; state.json holds the last one reached
FOLDERS = ("incoming", "work", "done", "quarantine")


@dataclass
class Inbox:
    root: Path  # NODE_DIR/service

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.last_seen: dict[str, float] = {}  # key -> time.monotonic() of its last file (this process's view)
        for f in FOLDERS:
            (self.root / f).mkdir(parents=True, exist_ok=True)

    def folder(self, where: str, key: str) -> Path:
        return self.root / where / key

    # --- the listener's side ------------------------------------------------------------------------------------

    def receive(self, key: str, name: str, data: bytes, meta: dict[str, Any]) -> Path:
        """One instance of study ``key`` written into incoming as ``name`` (atomically; the listener names it by a
        pseudonym of its SOP Instance UID, so a resent instance replaces itself); ``meta`` kept beside it."""
        from workbench.atomic import write_bytes

        safe = "".join(c for c in name if c.isalnum() or c in "-_") or f"instance-{time.time_ns()}"
        with self.lock:
            study = self.folder("incoming", key)
            (study / "dicom").mkdir(parents=True, exist_ok=True)
            path = study / "dicom" / f"{safe}.dcm"
            write_bytes(path, data)
            info = study / "study.json"
            if not info.exists():
                write_text(info, json.dumps({**meta, "first_received": time.time()}) + "\n")
            self.last_seen[key] = time.monotonic()
        return path

    # --- the worker's side --------------------------------------------------------------------------------------

    def quiet(self, quiet_s: float) -> list[str]:
        """Keys in incoming that received nothing for ``quiet_s`` (files' ages after a restart), oldest first."""
        now_m, now = time.monotonic(), time.time()
        ready: list[tuple[float, str]] = []
        with self.lock:
            for study in (self.root / "incoming").iterdir():
                if not study.is_dir() or study.name.startswith("."):
                    continue
                files = list((study / "dicom").glob("*.dcm"))
                newest = max((f.stat().st_mtime for f in files), default=study.stat().st_mtime)
                age = now_m - self.last_seen[study.name] if study.name in self.last_seen else now - newest
                if age >= quiet_s:
                    ready.append((newest, study.name))
        return [k for _, k in sorted(ready)]

    def quiet_from_now(self) -> list[str]:
        """Start every incoming study's quiet clock again (at start, once the listener is up) and return their keys.

        A study that was arriving when the service died holds part of its instances, all of them older than
        ``quiet_s`` by the time a restarted service looks; the PACS pushes it again once it can reach the
        service. Without this the part is taken at once: quarantined for its missing slices, or worse, scored on
        a part of the series (and the whole study, pushed again, refused as scored before). A PACS that pushes
        again later than ``quiet_s`` still meets that: only asking the PACS how many instances it holds closes it."""
        now = time.monotonic()
        with self.lock:
            keys = [p.name for p in (self.root / "incoming").iterdir() if p.is_dir() and not p.name.startswith(".")]
            for key in keys:
                self.last_seen[key] = max(self.last_seen.get(key, now), now)
        return keys

    def take(self, key: str) -> Path:
        """incoming/<key> -> work/<key> (one rename; the listener starts a new incoming folder for later files)."""
        with self.lock:
            src, dst = self.folder("incoming", key), self.folder("work", key)
            if dst.exists():  # a crash between two renames of an earlier copy: keep both, the newer beside it
                dst = self._free("work", key)
            os.replace(src, dst)
            self.last_seen.pop(key, None)
            write_state(dst, "received")
        return dst

    def sweep(self, *also: Path) -> list[Path]:
        """What a killed service's writers left (``atomic_write``'s temporaries; at start only, before anything
        is written again), and return it: beside the study folders, in ``root`` itself (the audit log and
        status.json are rewritten whole), inside every study still in incoming/ or work/ (an instance the listener
        was writing, a half-made reports folder, state.json), and in the folders ``also`` names (the FHIR outbox).
        Studies in done/ and quarantine/ are not walked: nothing is written in them after their last rename."""
        gone = sweep_leftovers(self.root)
        for f in FOLDERS:
            gone += sweep_leftovers(self.root / f)
        for f in ("incoming", "work"):
            for study in (self.root / f).iterdir():
                if study.is_dir() and not study.name.startswith("."):
                    gone += [p for d in (study, *sorted(q for q in study.rglob("*") if q.is_dir()))
                             for p in sweep_leftovers(d)]
        for folder in also:
            gone += sweep_leftovers(folder)
        return gone

    def in_flight(self) -> list[Path]:
        """The studies in work/ (at start: what a killed service left there)."""
        return sorted(p for p in (self.root / "work").iterdir() if p.is_dir() and not p.name.startswith("."))

    def finish(self, work: Path) -> Path:
        with self.lock:
            dst = self._free("done", work.name)
            os.replace(work, dst)
        return dst

    def quarantine(self, study: Path, reason: str, stage: str) -> Path:
        """Move ``study`` (incoming or work) to quarantine with ``reason.json``."""
        with self.lock:
            dst = self._free("quarantine", study.name)
            reason = reason.replace(str(study), str(dst))  # files named where a person will find them
            write_text(study / "reason.json", json.dumps({"reason": reason, "stage": stage, "time": time.time()}) + "\n")
            os.replace(study, dst)
            self.last_seen.pop(study.name, None)
        return dst

    def already_done(self, key: str) -> Path | None:
        d = self.folder("done", key)
        return d if d.is_dir() else None

    def counts(self) -> dict[str, int]:
        return folder_counts(self.root)

    def _free(self, where: str, key: str) -> Path:
        dst, n = self.folder(where, key), 1
        while dst.exists():
            dst, n = self.folder(where, f"{key}-{n}"), n + 1
        return dst


def folder_counts(root: Path) -> dict[str, int]:
    """Studies in each of ``root``'s folders (``NODE_DIR/service``; a folder not made yet counts 0)."""
    return {f: sum(1 for p in (root / f).iterdir() if p.is_dir() and not p.name.startswith("."))
            if (root / f).is_dir() else 0 for f in FOLDERS}


def read_state(work: Path) -> dict[str, Any]:
    f = work / "state.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {"stage": "received"}


def write_state(work: Path, stage: str, **extra: Any) -> None:
    state = {**read_state(work), **extra, "stage": stage, "time": time.time()}
    write_text(work / "state.json", json.dumps(state) + "\n")


def reached(state: dict[str, Any], stage: str) -> bool:
    return STAGES.index(state.get("stage", "received")) >= STAGES.index(stage)


__all__ = ["FOLDERS", "STAGES", "Inbox", "folder_counts", "reached", "read_state", "write_state"]
