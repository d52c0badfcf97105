"""The one way anything is written: to a temporary name beside the target, then renamed over it.

A reader (a notebook, a node agent, a PACS export) never sees half a file, and a crash leaves the old file or
none, never a torn one. ``atomic_write`` is used at every write site, for files and folders alike.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that read the format from the name work);
    when the block ends cleanly it is renamed over ``path``, when it raises it is removed.

    The temporary may be made a folder: a folder target is swapped in whole (the old one set aside and removed
    after the rename), so a reader sees the old folder or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def sweep_leftovers(folder: str | Path) -> list[Path]:
    """Remove what killed writers left in ``folder`` (``atomic_write``'s temporaries and set-aside folders) and
    return them; a resumed job calls it before it writes again, since a dead writer's name holds another pid."""
    folder = Path(folder)
    gone = [p for p in folder.glob(".*") if ".tmp" in p.name or p.name.endswith(".old")] if folder.is_dir() else []
    for p in gone:
        _remove(p)
    return gone


def write_text(path: str | Path, text: str) -> None:
    """``text`` (UTF-8) to ``path``, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    """``data`` to ``path``, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
