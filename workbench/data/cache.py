"""Content-hashed cache of preprocessed CT inputs, so a second pass never decodes DICOM again.

The key is a hash of the series files' bytes (names and contents), the nodule centre and the preprocessing
config: change any slice, the click or the pipeline and the entry is simply not found. Entries are written to a
temporary file and renamed, so a killed run never leaves a half-written entry. The cache holds derived arrays
and geometry only, no header and no identifier.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_write, write_text


def series_files(series_dir: Path) -> list[Path]:
    """The files of a series folder (one level, hidden files skipped), sorted by name for a stable hash."""
    if series_dir.is_file():
        return [series_dir]
    return sorted(p for p in series_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def content_digest(files: Iterable[Path], extra: dict) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps(extra, sort_keys=True).encode())
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")) / "ct"


class PreprocessCache:
    """``get(key)`` / ``put(key, arrays, meta)`` over ``<root>/<key[:2]>/<key>.npz``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def key_for(self, files: list[Path], extra: dict) -> str:
        """``content_digest(files, extra)``, remembered per file-stat signature (names, sizes, mtimes).

        Hashing a series' bytes costs 20-400 ms (tens of MB); a one-case prediction should not pay it each time.
        The content key is computed once and found again through the stat signature; any rewrite of a file
        changes its mtime or size and so its signature, and the bytes are hashed again.
        """
        h = hashlib.blake2b(digest_size=20)
        h.update(json.dumps(extra, sort_keys=True).encode())
        for f in files:
            st = f.stat()
            h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        sig = h.hexdigest()
        memo = self.root / "stat" / sig[:2] / f"{sig}.key"
        try:
            return memo.read_text().strip()
        except OSError:
            pass
        key = content_digest(files, extra)
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text(memo, key)
        return key

    def get(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
                meta = json.loads(str(z["__meta__"]))
            return arrays, meta
        except (OSError, ValueError, KeyError):
            return None  # an unreadable entry is a miss; it is rewritten

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp, tmp.open("wb") as f:
            payload: dict[str, Any] = {"__meta__": np.array(json.dumps(meta)), **arrays}
            np.savez(f, **payload)
