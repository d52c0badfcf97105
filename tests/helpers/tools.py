"""External tools some tests need."""

from __future__ import annotations

import shutil


def has_tool(name: str) -> bool:
    """Whether ``name`` is on PATH (dcmtk's dsrdump, say)."""
    return shutil.which(name) is not None
