"""What of a file the PHI scan reads, by what the file is: the text a person or a program would get out of it.

- text (UTF-8): all of it, runs of 200+ base64 characters dropped (embedded images: pixels, not text);
- a notebook: its cells, outputs and widget state, image outputs' data dropped (their metadata kept);
- a PDF: the text of every page (pypdf) and the document information (the page streams are compressed);
- a zip (PyTorch checkpoints, ``.npz``): the member names and every member, uncompressed, read again by kind;
- a PNG: its text chunks (the pixels are out of scope);
- DICOM: every byte before the pixel data (element values are stored as they read);
- anything else (safetensors, ONNX, SQLite, FAISS indexes, pickles): every byte, as UTF-8 and as UTF-16-LE.

Compressed bytes are never searched as they lie: they look random, and random bytes hold a 4-letter name about
once in 100 MB.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BASE64 = re.compile(r"[A-Za-z0-9+/=\\]{200,}")  # JSON escapes "\n" inside base64 as "\\n": kept in the run
_PIXEL_DATA = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Part:
    """Something to search: ``text`` (a str, searched lower-cased as UTF-8) or ``data`` (bytes, both encodings)."""

    label: str  # "" for the file itself, else where in it (a zip member, "pdf text")
    text: str | None = None
    data: bytes | None = None


def artifact_kind(rel: str) -> str:
    """The figures' name for what a file is, from its path."""
    p = rel.lower()
    name = p.rsplit("/", 1)[-1]
    rules = (("capture/", "message"), ("ledger", "ledger"), ("audit", "audit_log"), ("rounds.json", "rounds"),
             ("metrics", "metrics"), ("status.json", "status"), ("federation.json", "run_summary"),
             ("ray_logs/", "log"), ("/cache/", "node_cache"), ("calibration", "calibration"),
             ("uncertainty", "calibration"), ("/similar/", "similar_cases"), ("/model/", "model"),
             ("/reader/", "model"))
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in (".pt", ".pth", ".safetensors", ".ckpt", ".onnx"):
        return "checkpoint"
    for needle, kind in rules:
        if needle in p:
            return kind
    by_suffix = {".npz": "arrays", ".npy": "arrays", ".ipynb": "notebook", ".log": "log",
                 ".dcm": "dicom", ".pdf": "report", ".html": "report", ".sqlite": "sqlite", ".db": "sqlite",
                 ".png": "image", ".faiss": "index", ".index": "index"}
    if name.startswith("report"):
        return "report"
    if suffix in by_suffix:
        return by_suffix[suffix]
    if name in ("stdout", "stderr") or suffix in (".out", ".err"):
        return "log"
    return {".json": "json", ".jsonl": "json", ".toml": "config", ".md": "text", ".txt": "text"}.get(suffix, "other")


def parts(path: Path) -> list[Part]:
    """What of ``path`` is searched (module docstring)."""
    data = path.read_bytes()
    return parts_of(path.name, data)


def parts_of(name: str, data: bytes, depth: int = 0) -> list[Part]:
    low = name.lower()
    if low.endswith(".ipynb"):
        return [Part("", text=notebook_text(data))]
    if low.endswith(".pdf") or data[:5] == b"%PDF-":
        return [Part("pdf text", text=pdf_text(data))]
    if data[:4] == b"PK\x03\x04" and depth < 2:
        return _zip_parts(data, depth)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return [Part("png text chunks", text=png_text(data))]
    if low.endswith(IMAGE_SUFFIXES):
        return []
    if low.endswith(".dcm") or data[128:132] == b"DICM":
        cut = data.find(_PIXEL_DATA)
        return [Part("", data=data[:cut] if cut >= 0 else data)]
    if b"\x00" not in data[:8192]:
        try:
            return [Part("", text=_BASE64.sub("<base64>", data.decode("utf-8")))]
        except UnicodeDecodeError:
            pass
    return [Part("", data=data)]


def _zip_parts(data: bytes, depth: int) -> list[Part]:
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        out.append(Part("zip member names", text="\n".join(z.namelist())))
        for info in z.infolist():
            if info.is_dir():
                continue
            for p in parts_of(info.filename, z.read(info), depth + 1):
                out.append(Part(f"{info.filename}{'/' + p.label if p.label else ''}", p.text, p.data))
    return out


def notebook_text(data: bytes) -> str:
    """A notebook's JSON with every output's ``image/*`` data and long base64 runs dropped."""
    nb = json.loads(data)
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            bundle = out.get("data") or {}
            for key in [k for k in bundle if k.startswith("image/")]:
                bundle[key] = "<image>"
    return _BASE64.sub("<base64>", json.dumps(nb, ensure_ascii=False))


def pdf_text(data: bytes) -> str:
    """Every page's text and the document information (pypdf: a dev dependency, the reports' tests read with it)."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    info: dict[str, Any] = dict(reader.metadata or {})
    pages = [p.extract_text() or "" for p in reader.pages]
    return "\n".join([*(f"{k}: {v}" for k, v in info.items()), *pages])


def png_text(data: bytes) -> str:
    """The text chunks of a PNG (tEXt, zTXt, iTXt): the only place a PNG carries words."""
    out, at = [], 8
    while at + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        body = data[at + 8:at + 8 + length]
        if kind == b"tEXt":
            out.append(body.replace(b"\x00", b": ").decode("latin-1"))
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\x00")
            out.append(f"{key.decode('latin-1')}: {zlib.decompress(rest[1:]).decode('latin-1', 'replace')}")
        elif kind == b"iTXt":
            out.append(body.replace(b"\x00", b" ").decode("utf-8", errors="replace"))
        at += 12 + length
    return "\n".join(out)


__all__ = ["Part", "artifact_kind", "notebook_text", "parts", "parts_of", "pdf_text", "png_text"]
