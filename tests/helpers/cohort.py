"""What the cohort generator planted, for tests that scan outputs for it."""

from __future__ import annotations

import json
from pathlib import Path


def truth_phi(cohort: Path) -> set[str]:
    """Every PHI string the generator planted in a cohort (5 characters or more): what outputs are scanned for."""
    out: set[str] = set()
    for line in (cohort / "truth.jsonl").read_text().splitlines():
        out.update(s for s in json.loads(line).get("phi", []) if len(s) >= 5)
    return out
