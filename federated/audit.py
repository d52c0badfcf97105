"""A node's hash-chained audit log: one JSON line per round, each carrying the hash of the line before.

What a hospital's IT team checks after the fact (docs/architecture.md §7): the digest of the model it received, the digest and
norm of the update it sent, the epsilon spent, or the refusal. Editing or dropping a line breaks the chain,
which ``verify`` reports. Site names, digests and numbers only: nothing about a patient.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from workbench.atomic import write_text

GENESIS = "0" * 64


def _hash(prev: str, body: dict[str, Any]) -> str:
    return hashlib.sha256((prev + json.dumps(body, sort_keys=True)).encode()).hexdigest()


def append(path: str | Path, body: dict[str, Any]) -> str:
    """Append ``body`` chained to the last line; returns its hash. The whole file is rewritten atomically, so a
    crash mid-write leaves the previous chain intact rather than a torn last line that would break it."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    prev = json.loads(lines[-1])["hash"] if lines else GENESIS
    h = _hash(prev, body)
    lines.append(json.dumps({"prev": prev, "hash": h, "body": body}, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "\n".join(lines) + "\n")
    return h


# the app's per-round log, the node guard's per-message log, the inference service's per-study log; the server's
# per-round update screen (in its RUN folder)
LOG_NAMES = ("audit.jsonl", "guard_audit.jsonl", "service_audit.jsonl", "server_audit.jsonl")


def find_logs(node_dir: str | Path) -> list[Path]:
    """A node's audit logs: in NODE_DIR or its state folders (``<state>/<site>/audit.jsonl``); a file is itself."""
    node_dir = Path(node_dir)
    if node_dir.is_file():
        return [node_dir]
    return sorted({f for n in LOG_NAMES for f in (*node_dir.glob(n), *node_dir.glob(f"*/{n}"),
                                                  *node_dir.glob(f"*/*/{n}"))})


def verify(path: str | Path) -> int:
    """Number of lines whose chain holds; raises ValueError at the first broken link."""
    prev = GENESIS
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            ok = row["prev"] == prev and row["hash"] == _hash(prev, row["body"])
        except (json.JSONDecodeError, KeyError, TypeError):
            ok = False
        if not ok:
            raise ValueError(f"{path}: audit chain broken at line {i}")
        prev = row["hash"]
    return len(lines)
