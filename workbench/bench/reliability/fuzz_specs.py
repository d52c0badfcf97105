"""Hypothesis strategies that draw one fuzz case per target as a JSON-ready spec (``fuzz_targets`` applies it).

What they aim at, from the issue: mutated files (flipped bytes, truncation, inserted bytes), truncated series
(slices deleted, duplicated, moved into a subfolder, foreign files beside them), absurd tags and spacings (raw
element bytes: NaN, infinities, zero, negative, huge, wrong value counts, wrong lengths, text in numbers, wrong
modality or SOP class, missing elements), huge or binary notes, mixed scripts, control characters, lone
surrogates, and broken manifests, notes files and FHIR attachments. Bytes travel as hex so a spec is JSON.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from hypothesis import strategies as st

from workbench.cohort.generate import MANIFEST_COLUMNS

# ------------------------------------------------------------------------------------------ raw element values

NASTY_NUMBERS = ["0", "-0", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e400", "1e-320", "4.9e-324", "",
                 " ", "abc", "1,5", "0x10", "+.5", "5.", "-1", "1e6", "65536", "\u0661\u0662", "\uff11", "1 2",
                 "9" * 40, "0.000001", "-2.5"]


def _number_item() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY_NUMBERS), st.floats().map(repr),
                     st.floats(-1e3, 1e3).map(lambda v: f"{v:.6g}"), st.integers(-10**6, 10**6).map(str),
                     st.text(max_size=6))


def _ds(count: int) -> st.SearchStrategy[bytes]:
    """A decimal-string element: mostly the expected count of values, sometimes too few or too many."""
    n = st.one_of(st.just(count), st.integers(0, 7))
    return n.flatmap(lambda k: st.lists(_number_item(), min_size=k, max_size=k)).map(
        lambda xs: "\\".join(xs).encode("utf-8", errors="surrogatepass"))


_US = st.one_of(st.sampled_from([0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 24, 32, 64, 255, 4096, 65535]),
                st.integers(0, 65535)).map(lambda v: struct.pack("<H", v)) | st.binary(max_size=5)
_IS = st.one_of(st.sampled_from(["0", "1", "-1", "2", "8", "9", "99999999", "2147483648", "", "abc", "1.5", "7\\8"]),
                st.integers(-2**31, 2**31).map(str)).map(str.encode)
_CS = st.one_of(st.sampled_from(["CT", "MR", "SR", "SEG", "PT", "OT", "", "ct", " CT", "CT\\MR", "MONOCHROME1",
                                 "RGB", "YBR_FULL", "POINT", "POLYGON", "CIRCLE", "ELLIPSE", "MULTIPOINT",
                                 "SCOORD", "SCOORD3D", "CONTAINER", "IMAGE"]),
                st.text(max_size=16)).map(lambda s: s.encode("utf-8", errors="surrogatepass"))
_UI = st.one_of(st.sampled_from(["", "1.2.3", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1",
                                 "1.2.840.10008.5.1.4.1.1.2.2", "1.2.840.10008.1.3.10", "1.2.840.10008.5.1.4.1.1.4",
                                 "1.2.840.10008.5.1.4.1.1.66.4", "0." * 40]),
                st.text(max_size=64)).map(lambda s: s.encode("utf-8", errors="surrogatepass"))
_CHARSET = st.sampled_from(["ISO_IR 192", "ISO_IR 100", "ISO 2022 IR 87", "ISO 2022 IR 149", "GB18030", "bogus",
                            "ISO_IR 192\\ISO 2022 IR 13", "", "\\"]).map(str.encode)
_FL = st.one_of(st.lists(st.floats(width=32), max_size=12).map(lambda v: struct.pack(f"<{len(v)}f", *v)),
                st.binary(max_size=13))
_LO = st.one_of(st.sampled_from(["nodule-workbench", "nodule-workbench 1.0", ""]), st.text(max_size=20)).map(
    lambda s: s.encode("utf-8", errors="surrogatepass"))
_OB = st.one_of(st.binary(max_size=3000), st.integers(0, 40000).map(lambda n: b"\x01\x00" * n))
RAW = {"ds1": _ds(1), "ds2": _ds(2), "ds3": _ds(3), "ds6": _ds(6), "us": _US, "is": _IS, "cs": _CS, "ui": _UI,
       "charset": _CHARSET, "fl": _FL, "lo": _LO, "ob": _OB}

SLICE_TAGS = {
    "PixelSpacing": "ds2", "SliceThickness": "ds1", "ImagePositionPatient": "ds3", "ImageOrientationPatient": "ds6",
    "RescaleSlope": "ds1", "RescaleIntercept": "ds1", "Rows": "us", "Columns": "us", "BitsAllocated": "us",
    "BitsStored": "us", "HighBit": "us", "PixelRepresentation": "us", "SamplesPerPixel": "us",
    "PlanarConfiguration": "us", "NumberOfFrames": "is", "Modality": "cs", "PhotometricInterpretation": "cs",
    "SeriesInstanceUID": "ui", "SOPClassUID": "ui", "SpecificCharacterSet": "charset", "PixelData": "ob",
}
_FG = "PerFrameFunctionalGroupsSequence[{i}]."
ENHANCED_TAGS = {
    "Rows": "us", "Columns": "us", "NumberOfFrames": "is", "BitsAllocated": "us", "SOPClassUID": "ui",
    "Modality": "cs", "PixelData": "ob", "PixelRepresentation": "us",
    "SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing": "ds2",
    "SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness": "ds1",
    "SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient": "ds6",
    "SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleSlope": "ds1",
    _FG + "PlanePositionSequence[0].ImagePositionPatient": "ds3",
    _FG + "PixelValueTransformationSequence[0].RescaleIntercept": "ds1",
}
ENHANCED_DROPS = ["SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
                  "SharedFunctionalGroupsSequence[0].PixelMeasuresSequence",
                  _FG + "PlanePositionSequence", "NumberOfFrames"]
_ITEM = "ContentSequence[0]."
SR_TAGS = {
    _ITEM + "GraphicData": "fl", _ITEM + "GraphicType": "cs", _ITEM + "ValueType": "cs", "Modality": "cs",
    "SeriesInstanceUID": "ui", "StudyInstanceUID": "ui", _ITEM + "ReferencedFrameOfReferenceUID": "ui",
    _ITEM + "ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID": "ui",
    "Manufacturer": "lo", "SpecificCharacterSet": "charset", "SOPClassUID": "ui",
}
SR_DROPS = ["ContentSequence", _ITEM + "GraphicData", _ITEM + "ContentSequence", "Modality", "SeriesInstanceUID",
            _ITEM + "ContentSequence[0].ReferencedSOPSequence"]
SEG_TAGS = {
    "Rows": "us", "Columns": "us", "NumberOfFrames": "is", "BitsAllocated": "us", "PixelData": "ob",
    "Modality": "cs", "SegmentationType": "cs", "SeriesInstanceUID": "ui", "SOPClassUID": "ui",
    "SegmentSequence[0].SegmentNumber": "us",
    "SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing": "ds2",
    "SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient": "ds6",
    _FG + "PlanePositionSequence[0].ImagePositionPatient": "ds3",
    _FG + "SegmentIdentificationSequence[0].ReferencedSegmentNumber": "us",
}
SEG_DROPS = ["SegmentSequence", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
             "ReferencedSeriesSequence", "DimensionIndexSequence", "FrameOfReferenceUID"]


def _tag_op(tags: dict[str, str], drops: list[str], files: st.SearchStrategy[int]) -> st.SearchStrategy[dict]:
    def tag(path: str) -> st.SearchStrategy[dict]:
        return st.builds(lambda f, i, raw: {"op": "tag", "file": f, "path": path.format(i=i), "raw": raw.hex()},
                         files, st.integers(0, 9), RAW[tags[path]])

    keyed = st.sampled_from(sorted(tags)).flatmap(tag)
    dropped = st.builds(lambda f, p, i: {"op": "drop", "file": f, "path": p.format(i=i)},
                        files, st.sampled_from(sorted({*drops, *tags})), st.integers(0, 9))
    return st.one_of(keyed, keyed, dropped)


_OFFSET = st.one_of(st.integers(0, 1600), st.integers(0, 2**31))


def _byte_ops(files: st.SearchStrategy[Any]) -> st.SearchStrategy[dict]:
    return st.one_of(
        st.builds(lambda f, o, x, c: {"op": "flip", "file": f, "offset": o, "xor": x, "count": c},
                  files, _OFFSET, st.integers(1, 255), st.integers(1, 16)),
        st.builds(lambda f, k: {"op": "truncate", "file": f, "keep": k}, files, st.floats(0.0, 1.0)),
        st.builds(lambda f, o, d: {"op": "insert", "file": f, "offset": o, "data": d.hex()},
                  files, _OFFSET, st.binary(min_size=1, max_size=64)),
    )


def _series_ops(files: st.SearchStrategy[int]) -> st.SearchStrategy[dict]:
    return st.one_of(
        st.builds(lambda f: {"op": "delete", "file": f}, files),
        st.builds(lambda f: {"op": "duplicate", "file": f}, files),
        st.builds(lambda f: {"op": "subdir", "file": f}, files),
        st.builds(lambda n, d: {"op": "junk", "name": n, "data": d.hex()},
                  st.sampled_from(["notes.txt", "DICOMDIR", ".hidden", "junk.dcm", "README", "x"]),
                  st.binary(max_size=600)),
        st.builds(lambda w: {"op": "foreign", "what": w}, st.sampled_from(["point", "seg"])),
    )


def dicom_spec() -> st.SearchStrategy[dict]:
    files = st.one_of(st.integers(0, 9), st.just(-1))

    def for_seed(seed: str) -> st.SearchStrategy[dict]:
        tags = _tag_op(ENHANCED_TAGS, ENHANCED_DROPS, files) if seed == "enhanced" \
            else _tag_op(SLICE_TAGS, ["ImagePositionPatient", "PixelSpacing", "Rows", "RescaleSlope", "Modality",
                                      "SeriesInstanceUID", "BitsAllocated"], files)
        op = st.one_of(tags, tags, _byte_ops(files), _series_ops(files))
        return st.builds(lambda ops, as_file: {"seed": seed, "ops": ops, "as_file": as_file},
                         st.lists(op, min_size=1, max_size=4), st.booleans())

    return st.sampled_from(["native", "native", "native", "enhanced", "jpegls", "rle"]).flatmap(for_seed)


def sr_mark_spec() -> st.SearchStrategy[dict]:
    def for_seed(seed: str) -> st.SearchStrategy[dict]:
        tags = _tag_op(SEG_TAGS, SEG_DROPS, st.just(0)) if seed == "seg" else _tag_op(SR_TAGS, SR_DROPS, st.just(0))
        op = st.one_of(tags, tags, tags, _byte_ops(st.just(0)))
        return st.builds(lambda ops: {"seed": seed, "ops": ops}, st.lists(op, min_size=1, max_size=3))

    return st.sampled_from(["point", "point", "polygon", "circle", "seg"]).flatmap(for_seed)


# ----------------------------------------------------------------------------------------------- note text

FRAGMENTS = [
    "Mr. John Smith", "Ms. Maria Okafor (MRN 00482913)", "seen 03/14/2024", "DOB 1959-06-05", "a sixty-five year old",
    "one hundred fifty-three over eighty-one", "Dr. O'Neil-Ramírez", "lives in San Luis Obispo",
    "Tel: (555) 123-4567", "john.smith@example.org", "12 Main St, Springfield, IL 62704", "SSN 123-45-6789",
    "Mercy Valley Hospital", "[NAME]", "[DATE]", "8 mm spiculated nodule, RUL", "ninety nine", "Mr.", "Dr",
    "http://10.0.0.1/x", "MRN:", "12-JUL-2024", "Henrik", "son,", "—", "\n\n", "\t", "  ", ".", ",", "Jr.", "III",
]
SCRIPTS = ["Иван Петров", "Олег", "محمد الأحمد", "王伟", "李娜医生", "राजेश", "שרה כהן", "Ωμέγα", "ภาษาไทย", "한국어",
           "👩‍⚕️", "🫁", "e\u0301", "\u202eevil", "\u200b", "\ufeff", "\x00", "\x07", "\x1b[31m", "\r", "\x85",
           "\u2028", "\ud800", "\udfff", "\uff11\uff12", "\u0663\u0664", "²³", "ǅ", "ẞ", "ﬁ", "İstanbul", "Straße"]


def _mixed() -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(FRAGMENTS), st.sampled_from(SCRIPTS), st.text(max_size=12),
                      st.integers(-10, 10**9).map(str))
    sep = st.sampled_from([" ", "", "\n", ", ", ". ", "-", "\t", "/"])
    return st.lists(st.tuples(piece, sep), max_size=40).map(lambda ps: "".join(p + s for p, s in ps))


def note_text(*, huge: int = 200_000) -> st.SearchStrategy[str]:
    """Any note: clinical fragments mixed with other scripts, any code points (lone surrogates and controls
    included), bytes read as Latin-1 or with replacement, and now and then a huge one (a pasted record)."""
    normal = st.one_of(
        _mixed(), _mixed(),
        st.text(max_size=300),
        st.text(alphabet=st.characters(exclude_categories=()), max_size=300),
        st.binary(max_size=2000).map(lambda b: b.decode("latin-1")),
        st.binary(max_size=2000).map(lambda b: b.decode("utf-8", errors="replace")),
        st.binary(max_size=400).map(lambda b: b.decode("utf-8", errors="surrogateescape")),
    )
    big = st.builds(lambda t, n: ((t or "x") * (n // max(len(t), 1) + 1))[:n], _mixed(), st.integers(1000, huge))
    return st.integers(0, 99).flatmap(lambda k: big if k < 3 else normal)


def text_spec() -> st.SearchStrategy[dict]:
    return note_text().map(lambda t: {"text": t})


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


_JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=10),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                     max_leaves=12)


def _fhir() -> st.SearchStrategy[bytes]:
    data = st.one_of(note_text(huge=5000).map(lambda t: base64.b64encode(_encoded(t)).decode()),
                     st.text(max_size=40), _JSON)
    attachment = st.fixed_dictionaries({"data": data}, optional={
        "contentType": st.sampled_from(["text/plain", "text/html", "application/pdf", "", 3])})
    content = st.lists(st.one_of(st.fixed_dictionaries({"attachment": attachment}), _JSON), max_size=3)
    doc = st.fixed_dictionaries(
        {"resourceType": st.sampled_from(["DocumentReference", "DocumentReference", "Patient", 3, None])},
        optional={"content": st.one_of(content, _JSON)})
    return st.one_of(doc, _JSON).map(lambda d: json.dumps(d).encode()).flatmap(
        lambda b: st.one_of(st.just(b), st.integers(0, len(b)).map(lambda k: b[:k])))


def note_file_spec() -> st.SearchStrategy[dict]:
    data = st.one_of(note_text(huge=400_000).map(_encoded), _fhir(), _fhir(), st.binary(max_size=3000),
                     st.integers(800_001, 1_000_000).map(lambda n: b"a" * n))
    return st.builds(lambda name, d: {"name": name, "data": d.hex()}, st.sampled_from(["note.txt", "note.json"]), data)


# ------------------------------------------------------------------------------------------------- site

CELLS = ["", "nan", "inf", "-1e309", "1e400", "1e308", "..", "dicom", "dicom/case_1", "dicom/case_0/", "notes.jsonl",
         "dicom/missing", "a\x00b", "   ", "0", "1", "2", "-1", "test", "TRAIN", "n0", "n1", "n9", "fz_0000",
         "\ufeffcase", "１", "0x1", "1_000"]


def _cell_value() -> st.SearchStrategy[str]:
    safe = st.text(max_size=30).filter(lambda s: not s.lstrip().startswith(("/", "\\", "~")))
    return st.one_of(st.sampled_from(CELLS), safe, st.floats().map(repr))


def ingest_spec() -> st.SearchStrategy[dict]:
    files = st.one_of(st.sampled_from(["manifest.csv", "notes.jsonl"]), st.integers(0, 20))
    series_files = st.one_of(st.integers(0, 9), st.just(-1))
    series_op = st.one_of(_tag_op(SLICE_TAGS, ["ImagePositionPatient", "Modality"], series_files),
                          _byte_ops(series_files), _series_ops(series_files))
    op = st.one_of(
        st.builds(lambda r, c, v: {"op": "cell", "row": r, "column": c, "value": v},
                  st.integers(0, 3), st.sampled_from([*MANIFEST_COLUMNS, "extra"]), _cell_value()),
        st.builds(lambda c: {"op": "drop_column", "column": c}, st.sampled_from(MANIFEST_COLUMNS)),
        st.builds(lambda r: {"op": "dup_row", "row": r}, st.integers(0, 3)),
        st.builds(lambda k, t: {"op": "note_text", "line": k, "text": t}, st.integers(0, 2), note_text(huge=150_000)),
        st.builds(lambda k, d: {"op": "note_raw", "line": k, "data": d.hex()}, st.integers(0, 2),
                  st.one_of(st.binary(max_size=200), _JSON.map(lambda j: json.dumps(j).encode()),
                            st.sampled_from([b'{"note_id": "n0", "text": "\\ud800"}', b'{"note_id": "n1"}',
                                             b'{"note_id": ["n0"], "text": 3}', b"[]", b"{", b'"x"', b"\xff\xfe"]))),
        st.builds(lambda c, o: {"op": "series", "case": c, "ops": o}, st.integers(0, 1),
                  st.lists(series_op, min_size=1, max_size=3)),
        _byte_ops(files),
        st.builds(lambda p: {"op": "remove", "path": p},
                  st.sampled_from(["notes.jsonl", "manifest.csv", "dicom/case_0", "dicom/case_1", "dicom"])),
    )
    return st.lists(op, min_size=1, max_size=4).map(lambda ops: {"ops": ops})


SPECS = {"dicom": dicom_spec, "sr_mark": sr_mark_spec, "deid": text_spec, "tokenizer": text_spec,
         "note_file": note_file_spec, "ingest": ingest_spec}
