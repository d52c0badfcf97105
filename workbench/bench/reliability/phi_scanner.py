"""Scan folders of artifacts for PHI and keep the figures: what was read (by kind, files and bytes), every leak
(the PHI's kind, the file, its context with the PHI masked), and what is exempt by design and why.

Exempt files are read as well: what the scan finds in them (a clinical report names its patient) is counted
apart, never as a leak. That count is the scan's positive control on real artifacts: a scanner that found
nothing anywhere would prove nothing.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.bench.reliability.phi_files import artifact_kind, parts
from workbench.bench.reliability.phi_search import Matcher

MAX_LEAKS_LISTED = 200


@dataclass
class Scanner:
    """Accumulates one scan's figures over every folder and file handed to it."""

    matcher: Matcher
    work: Path  # leaks name their file relative to it
    artifacts: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> {"files", "bytes"}
    leaks: list[dict[str, Any]] = field(default_factory=list)
    leak_count: int = 0
    exempt: dict[str, dict[str, Any]] = field(default_factory=dict)  # reason -> {"files", "bytes", "phi_found"...}
    errors: list[str] = field(default_factory=list)

    def scan_tree(self, root: Path, exempt: list[tuple[str, str]] | None = None, kind: str | None = None) -> None:
        """Every file under ``root``; ``exempt``: (glob on the path relative to ``root``, why) of files allowed to
        carry identifiers. Links to folders are not followed (a cohort view links the hospital's DICOM)."""
        root = Path(root)
        if not root.exists():
            return
        files = [root] if root.is_file() else sorted(p for p in _walk(root) if p.is_file())
        for f in files:
            rel = f.relative_to(root).as_posix() if f != root else f.name
            why = next((reason for pattern, reason in exempt or [] if fnmatch.fnmatch(rel, pattern)), None)
            self.scan_file(f, kind=kind, exempt=why)

    def scan_file(self, path: Path, *, kind: str | None = None, exempt: str | None = None) -> int:
        """Search one file; returns the PHI strings found (leaks, or exempt hits when ``exempt`` says why)."""
        rel = _rel(path, self.work)
        size = path.stat().st_size
        try:
            pieces = parts(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable artifact is reported, not skipped in silence
            self.errors.append(f"{rel}: {type(exc).__name__}: {exc}")
            pieces = []
        found: list[dict[str, Any]] = []
        for p in pieces:
            if p.text is not None:
                data, hits = self.matcher.find_text(p.text)
            else:
                data = p.data or b""
                hits = self.matcher.find_bytes(data)
            for h in hits:
                found.append({"kind": self.matcher.kinds[h.string], "artifact": rel + (f"#{p.label}" if p.label else ""),
                              "encoding": h.encoding, "context": self.matcher.context(data, h)})
        if exempt is not None:
            e = self.exempt.setdefault(exempt, {"files": 0, "bytes": 0, "phi_found": 0, "phi_found_by_kind": Counter()})
            e["files"] += 1
            e["bytes"] += size
            e["phi_found"] += len(found)
            e["phi_found_by_kind"].update(f["kind"] for f in found)
            return len(found)
        a = self.artifacts.setdefault(kind or artifact_kind(rel), {"files": 0, "bytes": 0})
        a["files"] += 1
        a["bytes"] += size
        self.leak_count += len(found)
        self.leaks += found[:max(0, MAX_LEAKS_LISTED - len(self.leaks))]
        return len(found)

    def figures(self) -> dict[str, Any]:
        return {"artifacts": dict(sorted(self.artifacts.items())),
                "artifact_files": sum(a["files"] for a in self.artifacts.values()),
                "artifact_bytes": sum(a["bytes"] for a in self.artifacts.values()),
                "leaks": self.leaks, "leaks_listed": len(self.leaks),
                "exempt": {k: {**v, "phi_found_by_kind": dict(v["phi_found_by_kind"])} for k, v in self.exempt.items()},
                "unreadable": self.errors}


def _walk(root: Path) -> list[Path]:
    out = []
    for p in root.iterdir():
        if p.is_symlink() and p.is_dir():
            continue
        out += _walk(p) if p.is_dir() else [p]
    return out


def _rel(path: Path, work: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(work).resolve()).as_posix()
    except ValueError:
        return str(path)


__all__ = ["Scanner"]
