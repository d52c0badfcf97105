"""What one fuzz case does, inside the fuzz worker process: copy the seeds, apply the case's mutations, call the
library the way the workbench calls it.

A case is a JSON-ready ``spec`` (drawn by ``fuzz_specs``) that holds every random choice (offsets, bytes, raw
element values), so applying it again gives the same files: a crash found once is replayed from its spec.
Each target returns a *thunk*: the mutation (harness work, never counted as the library's fault) is done when
the target returns, and only the thunk's call is timed and judged.

Raw element values are written as ``UN`` elements (``replace_un_with_known_vr`` off while writing), so any
bytes reach the file; pydicom reads them back under the dictionary VR, as it would read a broken scanner's file.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import CaseError, WorkbenchError

Thunk = Callable[[], object]
PHASES = {"tag": 0, "drop": 0, "cell": 0, "drop_column": 1, "dup_row": 1, "note_text": 1, "note_raw": 1,
          "series": 2, "delete": 3, "duplicate": 3, "subdir": 3, "junk": 3, "foreign": 3, "remove": 3,
          "flip": 4, "truncate": 4, "insert": 4}


class PropertyViolation(AssertionError):
    """A call that returned, but returned something no caller can use (a singular affine, NaN HU...)."""


@dataclass
class Context:
    """The worker's seeds, its scratch folder, and what is worth loading once (the tokenizer, the seed CT)."""

    seeds: Path | None
    scratch: Path
    memo: dict[str, Any] = field(default_factory=dict)

    def fresh(self, name: str, source: Path | None = None) -> Path:
        """``scratch/name`` emptied, holding a copy of ``source`` when given."""
        dst = self.scratch / name
        shutil.rmtree(dst, ignore_errors=True)
        if dst.exists():  # a file a mutation left under this name
            dst.unlink()
        if source is None:
            dst.mkdir(parents=True)
        elif source.is_dir():
            shutil.copytree(source, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dst)
        return dst

    def seed(self, *parts: str) -> Path:
        if self.seeds is None:
            raise RuntimeError("this harness was started without seeds")
        return self.seeds.joinpath(*parts)

    def tokenizer(self) -> Any:
        if "tokenizer" not in self.memo:
            from workbench.models.tokenizer import load_tokenizer

            self.memo["tokenizer"] = load_tokenizer()
        return self.memo["tokenizer"]

    def native_ct(self) -> Any:
        if "native" not in self.memo:
            from workbench.data.dicom_io import load_ct_series

            self.memo["native"] = load_ct_series(self.seed("series", "native"))
        return self.memo["native"]


Target = Callable[[dict[str, Any], Context], Thunk]  # a case's spec and the worker's context -> its thunk


# ----------------------------------------------------------------------------------------------- mutations


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _pick(folder: Path, ref: int | str, *, dicom_only: bool = False) -> list[Path]:
    """The files an op names: an index (modulo the count; -1 is every file) or a path under ``folder``."""
    if isinstance(ref, str):
        p = folder / ref
        return [p] if p.is_file() else []
    files = _files(folder)
    if dicom_only:
        files = [f for f in files if f.suffix == ".dcm" or f.parent.name.startswith(("case_", "series"))]
    if not files:
        return []
    return files if ref < 0 else [files[ref % len(files)]]


def _locate(ds: Any, path: str) -> tuple[Any, str] | None:
    """The dataset holding ``path``'s last element ("A[0].B[2].C" walks sequences) and that keyword."""
    *parents, last = path.split(".")
    for part in parents:
        name, _, index = part.partition("[")
        seq = ds.get(name) if name in ds else None
        if not seq:
            return None
        ds = seq[int(index.rstrip("]") or 0) % len(seq)]
    return ds, last


def _edit_element(file: Path, path: str, raw: bytes | None) -> None:
    """Set ``path`` to ``raw`` bytes (a UN element pydicom reads back under the dictionary VR), or drop it."""
    import pydicom
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import DataElement

    try:
        ds = pydicom.dcmread(file, force=True)
        found = _locate(ds, path)
    except Exception:  # noqa: BLE001 - an earlier op broke the file: a tag edit has nothing to act on
        return
    if found is None:
        return
    holder, keyword = found
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"unknown keyword {keyword}")
    before = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False
    try:
        if raw is None:
            if tag in holder:
                del holder[tag]
        elif keyword == "SpecificCharacterSet":  # pydicom's writer decodes this one itself: give it text
            holder[tag] = DataElement(tag, "CS", raw.decode("latin-1"))
        else:
            holder[tag] = DataElement(tag, "UN", raw + b"\0" * (len(raw) % 2))
        out = io.BytesIO()
        ds.save_as(out)
    except Exception:  # noqa: BLE001 - a file an earlier op damaged may not write back: leave it as it is
        return
    finally:
        pydicom.config.replace_un_with_known_vr = before
    file.write_bytes(out.getvalue())


def _byte_op(f: Path, op: dict[str, Any]) -> None:
    data = bytearray(f.read_bytes())
    kind = op["op"]
    if kind == "flip" and data:
        at = op["offset"] % len(data)
        for k in range(at, min(at + op.get("count", 1), len(data))):
            data[k] ^= op["xor"]
    elif kind == "truncate":
        del data[int(len(data) * op["keep"]):]
    elif kind == "insert":
        at = op["offset"] % (len(data) + 1)
        data[at:at] = bytes.fromhex(op["data"])
    f.write_bytes(bytes(data))


def mutate_folder(folder: Path, ops: list[dict[str, Any]], seeds: Path | None = None) -> None:
    """Apply a case's file ops to ``folder``, element edits first and byte damage last (stable within a phase)."""
    for op in sorted(ops, key=lambda o: PHASES[o["op"]]):
        kind = op["op"]
        if kind in ("tag", "drop"):
            for f in _pick(folder, op["file"], dicom_only=True):
                _edit_element(f, op["path"], bytes.fromhex(op["raw"]) if kind == "tag" else None)
        elif kind in ("flip", "truncate", "insert"):
            for f in _pick(folder, op["file"]):
                _byte_op(f, op)
        elif kind == "delete":
            for f in _pick(folder, op["file"]):
                f.unlink()
        elif kind == "duplicate":
            for f in _pick(folder, op["file"]):
                shutil.copy2(f, f.with_name(f"copy_{f.name}"))
        elif kind == "subdir":
            for f in _pick(folder, op["file"]):
                (f.parent / "sub").mkdir(exist_ok=True)
                f.rename(f.parent / "sub" / f.name)
        elif kind == "junk":
            (folder / op["name"]).write_bytes(bytes.fromhex(op["data"]))
        elif kind == "foreign" and seeds is not None:
            shutil.copy2(seeds / "marks" / f"{op['what']}.dcm", folder / f"foreign_{op['what']}.dcm")
        elif kind == "remove":
            p = folder / op["path"]
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        else:
            raise ValueError(f"unknown op {kind}")


def _mutate_site(site: Path, ops: list[dict[str, Any]], seeds: Path | None) -> None:
    """Manifest and notes edits at the text level, then series and byte ops through ``mutate_folder``."""
    import csv
    import json

    manifest, notes = site / "manifest.csv", site / "notes.jsonl"
    text_ops = [o for o in ops if o["op"] in ("cell", "drop_column", "dup_row", "note_text", "note_raw")]
    for op in sorted(text_ops, key=lambda o: PHASES[o["op"]]):
        if op["op"] in ("cell", "drop_column", "dup_row"):
            rows = list(csv.reader(io.StringIO(manifest.read_text(encoding="utf-8"))))
            header, body = rows[0], rows[1:]
            if op["op"] == "cell" and body:
                r = body[op["row"] % len(body)]
                if op["column"] in header:
                    r[header.index(op["column"])] = op["value"]
                else:
                    header.append(op["column"])
                    r.append(op["value"])
            elif op["op"] == "drop_column" and op["column"] in header:
                k = header.index(op["column"])
                rows = [r[:k] + r[k + 1:] for r in rows]
                header, body = rows[0], rows[1:]
            elif op["op"] == "dup_row" and body:
                body.append(list(body[op["row"] % len(body)]))
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows([header, *body])
            manifest.write_bytes(buf.getvalue().encode("utf-8", errors="surrogatepass"))
        else:
            lines = notes.read_bytes().split(b"\n")
            k = op["line"] % max(len(lines) - 1, 1)
            if op["op"] == "note_text":
                try:
                    note_id = str(json.loads(lines[k])["note_id"])
                except Exception:  # noqa: BLE001 - an earlier op broke the line: any id will do
                    note_id = f"n{k}"
                lines[k] = json.dumps({"note_id": note_id, "text": op["text"]}).encode()
            else:
                lines[k] = bytes.fromhex(op["data"])
            notes.write_bytes(b"\n".join(lines))
    for op in ops:
        if op["op"] == "series":
            folder = site / "dicom" / f"case_{op['case']}"
            if folder.is_dir():
                mutate_folder(folder, op["ops"], seeds)
    mutate_folder(site, [o for o in ops if o["op"] in ("flip", "truncate", "insert", "remove", "junk")], seeds)


# ----------------------------------------------------------------------------------------------- targets


def _check_volume(img: Any) -> Any:
    """What every reader of ``load_ct_series`` assumes: a finite, invertible affine and finite HU."""
    import numpy as np

    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise PropertyViolation(f"load_ct_series returned a singular or non-finite affine {affine[:3].tolist()}")
    if not bool(np.isfinite(img.as_tensor().numpy()).all()):
        raise PropertyViolation("load_ct_series returned non-finite HU")
    return img


def dicom_target(spec: dict[str, Any], ctx: Context) -> Thunk:
    """The DICOM loader on a mutated copy of a seed series (a folder, or the enhanced file itself)."""
    from workbench.data.dicom_io import load_ct_series

    folder = ctx.fresh("series", ctx.seed("series", spec["seed"]))
    mutate_folder(folder, spec["ops"], ctx.seeds)
    target = folder / "enhanced.dcm" if spec.get("as_file") and (folder / "enhanced.dcm").is_file() else folder
    return lambda: _check_volume(load_ct_series(target))


def sr_mark_target(spec: dict[str, Any], ctx: Context) -> Thunk:
    """The service's mark path on a study folder holding the native CT and a mutated mark: scan, find, read,
    check the point lies in the CT."""
    from workbench.runtime.study import check_inside, nodule_from_file, scan_study
    from workbench.service.worker import find_mark

    study = ctx.fresh("study", ctx.seed("series", "native"))
    mark_dir = ctx.fresh("mark")
    ctx.fresh("mark/mark.dcm", ctx.seed("marks", f"{spec['seed']}.dcm"))
    mutate_folder(mark_dir, spec["ops"], ctx.seeds)
    for f in _files(mark_dir):
        f.rename(study / f"mark_{f.name}")
    image = ctx.native_ct()

    def call() -> object:
        found = scan_study(study)
        mark = find_mark(found.others)
        point = nodule_from_file(mark, found.ct)
        check_inside(point, image, str(mark))
        return point

    return call


def deid_target(spec: dict[str, Any], ctx: Context) -> Thunk:
    """The de-identifier on any text: it must return text."""
    from workbench.data.deid import deidentify

    text = spec["text"]

    def call() -> object:
        out = deidentify(text)
        if not isinstance(out, str):
            raise PropertyViolation(f"deidentify returned {type(out).__name__}")
        return out

    return call


def _encode(text: str | None, ctx: Context) -> object:
    """The model's note path (``encode_cases``: check, de-identify, spell numbers, tokenize) on one note."""
    from workbench.data.case import Case
    from workbench.runtime.encode import encode_cases

    tok = ctx.tokenizer()
    case = Case(case_id="fuzz", site="fuzz", split=None, series_dir=None, nodule_lps_mm=None, note=text)
    out = encode_cases([case], tok, modalities=("notes",), progress=False)
    ids = out.tensors["note_ids"] if len(out) else None
    if ids is not None and ids.numel() and int(ids.max()) >= len(tok):
        raise PropertyViolation("a note token id lies outside the vocabulary")
    return out


def tokenizer_target(spec: dict[str, Any], ctx: Context) -> Thunk:
    """The tokenizer as the model reaches it: through ``encode_cases`` with the notes modality."""
    return lambda: _encode(spec["text"], ctx)


def note_file_target(spec: dict[str, Any], ctx: Context) -> Thunk:
    """A note file as ``workbench predict`` and the service read it (text or FHIR JSON), then encoded."""
    from workbench.runtime.study import read_note

    folder = ctx.fresh("note")
    path = folder / spec["name"]
    path.write_bytes(bytes.fromhex(spec["data"]))
    return lambda: _encode(read_note(path), ctx)


def ingest_target(spec: dict[str, Any], ctx: Context) -> Thunk:
    """``ingest_site`` on a mutated copy of the two-case seed site, with a cache kept for the worker's life."""
    from workbench.data.ingest import ingest_site

    site = ctx.fresh("site/fuzz_site", ctx.seed("site", "fuzz_site"))
    _mutate_site(site, spec["ops"], ctx.seeds)

    def call() -> object:
        report = ingest_site(site, cache_dir=ctx.scratch / "cache", quarantine_path=ctx.scratch / "quarantine.csv",
                             progress=False)
        summary = report.summary()
        if summary["usable"] + len(summary["unusable"]) != summary["cases"]:
            raise PropertyViolation(f"ingest counts do not add up: {summary['usable']} usable, "
                                    f"{len(summary['unusable'])} unusable of {summary['cases']}")
        return summary

    return call


def _planted_raise(make: Callable[[], BaseException]) -> Target:
    """A planted target whose case raises what ``make`` builds."""
    def target(spec: dict[str, Any], ctx: Context) -> Thunk:
        def call() -> object:
            raise make()

        return call

    return target


def _planted_hang(spec: dict[str, Any], ctx: Context) -> Thunk:
    import time

    return lambda: time.sleep(float(spec.get("seconds", 3600)))


def _planted_memory(spec: dict[str, Any], ctx: Context) -> Thunk:
    return lambda: bytearray(int(spec.get("bytes", 1 << 40)))


def _planted_death(spec: dict[str, Any], ctx: Context) -> Thunk:
    return lambda: os._exit(3)


TARGETS: dict[str, Target] = {
    "dicom": dicom_target,
    "sr_mark": sr_mark_target,
    "deid": deid_target,
    "tokenizer": tokenizer_target,
    "note_file": note_file_target,
    "ingest": ingest_target,
}
# Targets that prove the harness itself: each must be judged what its name says (tests/reliability/test_fuzz.py).
PLANTED: dict[str, Target] = {
    "planted_crash": _planted_raise(lambda: ValueError("planted crash")),
    "planted_silent": _planted_raise(lambda: WorkbenchError("")),
    "planted_refusal": _planted_raise(lambda: CaseError("planted.dcm: a planted refusal")),
    "planted_hang": _planted_hang,
    "planted_memory": _planted_memory,
    "planted_death": _planted_death,
}
SEED_SPECS: dict[str, list[dict[str, Any]]] = {
    # each target on its unmutated seeds: the worker's warm-up (lazy imports such as highdicom's paid before the
    # first timed case and before the memory cap is set); each must pass
    "dicom": [{"seed": s, "ops": []} for s in ("native", "enhanced", "jpegls", "rle")],
    "sr_mark": [{"seed": s, "ops": []} for s in ("point", "polygon", "circle", "seg")],
    "deid": [{"text": "Mr. John Smith, MRN 00482913, seen 03/14/2024."}],
    "tokenizer": [{"text": "a sixty-five year old former smoker, 8 mm nodule"}],
    "note_file": [{"name": "note.txt", "data": b"a 67-year-old smoker".hex()}],
    "ingest": [{"ops": []}],
}
