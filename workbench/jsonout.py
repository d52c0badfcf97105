"""JSON out: strict (no NaN), numpy-aware, written atomically (temporary file, then rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import write_text


def jsonable(obj: Any) -> Any:
    """NaN and infinities become None (strict JSON readers refuse NaN); numpy scalars become Python ones."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")
