"""Similar cases as a reader compares them: a CT thumbnail in the viewer's orientation centred on the nodule, the
nodule as measured, the outcome and a snippet without the note's header; cached in the RUN, recomputed never."""

from __future__ import annotations

import base64
import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

from workbench.data.case import load_cases
from workbench.runtime.nodule_card import measured_nodule
from workbench.ui import similar_cards as sc


def _lps(affine: np.ndarray, vox: tuple[float, float, float]) -> tuple[float, float, float]:
    ras = affine @ np.array([*vox, 1.0])
    return (-ras[0], -ras[1], ras[2])


def test_the_thumbnail_is_centred_on_the_nodule_in_radiological_orientation() -> None:
    # a DICOM-like grid: I runs to the patient's left, J posterior (so RAS x and y fall along them), K superior
    affine = np.array([[-0.8, 0, 0, 100.0], [0, -0.8, 0, 80.0], [0, 0, 2.5, -200.0], [0, 0, 0, 1]])
    hu = np.full((100, 100, 30), -850.0, dtype=np.float32)
    c = (50, 50, 15)
    hu[48:53, 48:53, 14:17] = 30.0  # the nodule, at the mark
    hu[27:34, 47:54, 15] = 30.0  # a blob towards the patient's right (lower I), 16 mm away
    hu[47:54, 27:34, 15] = 30.0  # a blob anterior (lower J), 16 mm away
    img = sc.thumbnail(hu, affine, _lps(affine, c), sc.CardConfig(size_px=64, field_mm=40.0))
    assert img.shape == (64, 64) and img.dtype == np.uint8
    mid = 64 // 2
    assert img[mid, mid] > 200 and np.median(img) < 120  # the nodule, bright in the lung window; lung dark
    px = 16.0 / (40.0 / 64)  # 16 mm in thumbnail pixels
    right, anterior = img[mid, int(round(mid - px))], img[int(round(mid - px)), mid]
    assert right > 200 and anterior > 200  # the patient's right on the left, anterior up: as the viewer draws it
    assert img[mid, int(round(mid + px))] < 120 and img[int(round(mid + px)), mid] < 120


def test_the_snippet_quotes_the_risk_facts_never_the_header() -> None:
    note = ("Holy Cross Medical Center\nPatient: Romano, Ling    MRN: 562431060\nDOB: 29-JAN-1955\n\n"
            "HISTORY: Ms. Romano is a 66 year old woman. SOCIAL HISTORY: former smoker (36 pk-yr), quit in 2006.\n"
            "FAMILY HISTORY: family history significant for lung cancer (brother).")
    snip = sc.note_snippet(note)
    assert "former smoker" in snip and "36 pk-yr" in snip and len(snip) <= sc.SNIPPET_CHARS
    assert not any(w in snip for w in ("Romano", "562431060", "1955", "Holy Cross", "MRN"))
    assert sc.note_snippet(None) == "" and sc.note_snippet("x" * 50) == ""


def test_cards_show_size_type_lobe_thumbnail_are_cached_and_say_why_a_case_is_not_measured(tiny_cohort, tmp_path,
                                                                                           monkeypatch) -> None:  # noqa: ANN001
    truth = {json.loads(line)["case_id"]: json.loads(line)
             for line in (tiny_cohort / "truth.jsonl").read_text().splitlines() if line.strip()}
    site = sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())[0]
    cases = [c for c in load_cases(site) if c.has_ct and truth[c.case_id]["nodule_type"] == "solid"]
    case = max(cases, key=lambda c: truth[c.case_id]["diameter_mm"])
    rows = [{"case_id": case.case_id, "site": site.name, "label": case.label, "similarity": 0.9, "note": ""},
            {"case_id": f"{site.name}_<nope>", "site": site.name, "label": 0, "similarity": 0.5, "note": ""}]
    out = sc.similar_cards(rows, site, tmp_path)
    card = out[0]
    measured = measured_nodule(case, [])  # the card states the one measurement the nodule card states
    assert measured and all(card[k] == measured[k] for k in ("mean_diameter_mm", "long_axis_mm", "short_axis_mm",
                                                             "nodule_type", "lobe"))
    assert card["similarity"] == 0.9 and card["label"] == case.label
    png = Image.open(io.BytesIO(base64.b64decode(card["thumbnail_png"])))
    assert png.format == "PNG" and png.size == (64, 64)
    grey = np.asarray(png.convert("L"))
    assert grey[32, 32] > 180 and grey[32, 32] > np.median(grey) + 60  # the solid nodule at the centre pixel
    assert "not found" in out[1]["unmeasured"] and "thumbnail_png" not in out[1]
    cached = json.loads((tmp_path / sc.CARDS_FILE).read_text())
    assert set(cached["cards"]) == {r["case_id"] for r in rows}
    # a second look reads the cache: nothing is measured again
    monkeypatch.setattr(sc, "case_card", lambda *a, **k: pytest.fail("measured again"))
    assert sc.similar_cards(rows, site, tmp_path) == out
    monkeypatch.undo()
    # a case without a mark: no size, no thumbnail, and the reason
    unmarked = sc.case_card(dataclasses.replace(case, nodule_lps_mm=None))
    assert "mean_diameter_mm" not in unmarked and "no nodule mark" in unmarked["unmeasured"]
    # a mark outside the lungs: measuring refuses, and the card says why
    far = sc.case_card(dataclasses.replace(case, nodule_lps_mm=(0.0, 0.0, 10_000.0)))
    assert "mean_diameter_mm" not in far and "outside" in far["unmeasured"]
