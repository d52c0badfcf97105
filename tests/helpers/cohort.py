"""What the cohort generator planted, for tests that scan outputs for it."""

from __future__ import annotations

import json
import re
from pathlib import Path


def truth_phi(cohort: Path) -> set[str]:
    """Every PHI string the generator planted in a cohort (5 characters or more): what outputs are scanned for."""
    out: set[str] = set()
    for line in (cohort / "truth.jsonl").read_text().splitlines():
        out.update(s for s in json.loads(line).get("phi", []) if len(s) >= 5)
    return out


def phi_in(phi: set[str], text: str) -> list[str]:
    """The PHI strings that occur in ``text`` as whole tokens. A substring match would flag a 5-digit ZIP that
    turns up by chance inside a float (a vector, a widget's state); a leaked ZIP, MRN or name stands alone."""
    return sorted(s for s in phi if re.search(rf"(?<![0-9A-Za-z]){re.escape(s)}(?![0-9A-Za-z])", text))
