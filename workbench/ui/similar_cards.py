"""What a similar case shows beside its similarity: a CT thumbnail, the measured nodule, the outcome, a short snippet.

The similar-case index (``workbench.runtime.similar``) names a site's training cases; their files are at the same
node (the cohort's site folder), so each is loaded from there (``load_cases``) and shown the way a reader compares
cases by eye:

- a thumbnail: the axial slice through the marked nodule centre, ``field_mm`` (40 mm) square around it, lung
  window, in the viewer's radiological orientation (the patient's right on the left, anterior up:
  ``ct_viewer.to_ras`` and ``SCREEN_AXES``), a small PNG embedded as base64; the nodule centre is the pixel
  (size // 2, size // 2);
- the nodule as measured from its CT (``runtime.nodule_card.measured_nodule``: mean diameter as Lung-RADS defines
  it, long x short axis, type, lobe), or why it could not be measured;
- a snippet of at most ``SNIPPET_CHARS`` characters: the note's risk facts in its own words
  (``runtime.note_facts``: age, smoking, family history, prior cancer), read from the de-identified note, never
  its header (names, dates and numbers of the visit).

Measuring and reading a series takes seconds a case, so each card is computed once and kept in the RUN's
per-site similar folder (``similar/<site>/cards.json``, keyed by case id, written atomically); a cached card is
used while its settings (``CardConfig``) are the same.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import write_text

CARDS_FILE = "cards.json"
SNIPPET_CHARS = 140
FACT_ORDER = ("age", "smoking", "pack_years", "family_history", "prior_cancer")  # the risk facts a snippet quotes, in order


@dataclass(frozen=True)
class CardConfig:
    size_px: int = 64  # thumbnail width and height
    field_mm: float = 40.0  # the square of the axial slice the thumbnail shows
    window: tuple[float, float] = (-600.0, 1500.0)  # (level, width) HU: the viewer's lung window
    version: int = 1  # bumped when a card's contents change meaning (cached cards are then recomputed)


def thumbnail(hu: np.ndarray, affine_ras: np.ndarray, centre_lps: tuple[float, float, float],
              config: CardConfig = CardConfig()) -> np.ndarray:
    """(size, size) uint8: the axial slice through ``centre_lps`` of an (I, J, K) HU volume with this voxel -> RAS
    ``affine_ras`` (``load_ct_series``), ``field_mm`` square, lung window, radiological orientation (row 0
    anterior, column 0 the patient's right), linearly interpolated, centred on pixel (size // 2, size // 2).

    Raises:
        ValueError: an oblique or permuted series (``ras_frame``), as the viewer refuses it.
    """
    from scipy import ndimage

    from workbench.data.transforms import lps_to_ras, ras_to_voxel
    from workbench.ui.ct_viewer import ras_frame, to_ras, window

    affine = np.asarray(affine_ras, dtype=float)
    spacing, _ = ras_frame(affine, hu.shape)
    (ras,), marker = to_ras([np.asarray(hu)], affine, ras_to_voxel(affine, lps_to_ras(centre_lps)))
    assert marker is not None
    k = int(np.clip(round(float(marker[2])), 0, ras.shape[2] - 1))
    n = config.size_px
    offsets = (np.arange(n) - n // 2) * (config.field_mm / n)  # mm from the centre, per pixel
    # screen columns run from the patient's right (high I) to left, rows from anterior (high J) to posterior
    i = marker[0] - offsets / spacing[0]
    j = marker[1] - offsets / spacing[1]
    jj, ii = np.meshgrid(j, i, indexing="ij")  # (row, column)
    air = float(np.min(ras)) if ras.size else -1000.0
    sl = ndimage.map_coordinates(ras[:, :, k].astype(np.float32), [ii, jj], order=1, mode="constant", cval=air)
    return (window(sl, *config.window) * 255 + 0.5).astype(np.uint8)


def png_base64(grey: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def note_snippet(note: str | None, limit: int = SNIPPET_CHARS) -> str:
    """The note's risk facts in its own words ("66 year old; former smoker (36 pk-yr), quit in 2006; ..."), from
    the de-identified text; "" without a note or a fact. Never the header: only the words a fact was read from."""
    from workbench.data.deid import deidentify
    from workbench.runtime.note_facts import read_note_facts

    if not note:
        return ""
    facts = read_note_facts(deidentify(note))
    text = "; ".join(facts.evidence[k].strip() for k in FACT_ORDER if facts.evidence.get(k))
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def case_card(case: Any, config: CardConfig = CardConfig()) -> dict[str, Any]:
    """One training case's card: measured nodule (or ``unmeasured``: why not), thumbnail (or ``no_thumbnail``: why
    not), outcome and snippet. JSON-ready."""
    from workbench.data.dicom_io import load_ct_series
    from workbench.runtime.nodule_card import measured_nodule

    card: dict[str, Any] = {"label": case.label, "snippet": note_snippet(case.note)}
    if case.series_dir is None or case.nodule_lps_mm is None:
        card["unmeasured"] = "no CT series or no nodule mark"
        card["no_thumbnail"] = card["unmeasured"]
        return card
    try:
        image = load_ct_series(case.series_dir)
    except Exception as exc:  # noqa: BLE001 - an unreadable series: the card says why, the others still show
        card["unmeasured"] = card["no_thumbnail"] = f"CT not readable ({exc})"
        return card
    notes: list[str] = []
    m = measured_nodule(case, notes, image)
    if m:
        card.update({k: m.get(k) for k in ("mean_diameter_mm", "long_axis_mm", "short_axis_mm", "nodule_type",
                                           "solid_component_mm", "lobe", "spiculated")})
    else:
        why = next((n for n in notes if n.startswith("size: not measured")), "size: not measured")
        card["unmeasured"] = why.removeprefix("size: not measured").strip(" ()") or "not measured"
    try:
        card["thumbnail_png"] = png_base64(thumbnail(image.numpy()[0], np.asarray(image.affine), case.nodule_lps_mm,
                                                     config))
        card["thumbnail_mm"] = config.field_mm
    except ValueError as exc:
        card["no_thumbnail"] = str(exc)
    return card


def similar_cards(similar: list[dict[str, Any]], site_dir: str | Path, cache_folder: str | Path | None = None,
                  config: CardConfig = CardConfig()) -> list[dict[str, Any]]:
    """``similar`` (``SiteIndex.similar`` rows) with each case's card merged in, from ``cache_folder/cards.json``
    where it is cached (with the same ``config``), else computed from the site's case files and cached there. A
    case the site folder does not hold gets ``unmeasured``/``no_thumbnail`` saying so."""
    from workbench.data.case import load_cases

    if not similar:
        return []
    cache_path = Path(cache_folder) / CARDS_FILE if cache_folder is not None else None
    cached = _read_cache(cache_path, config)
    missing = [s["case_id"] for s in similar if s["case_id"] not in cached]
    if missing:
        by_id = {c.case_id: c for c in load_cases(site_dir)}
        for cid in missing:
            case = by_id.get(cid)
            cached[cid] = (case_card(case, config) if case is not None else
                           {"unmeasured": f"case not found in {Path(site_dir).name}",
                            "no_thumbnail": f"case not found in {Path(site_dir).name}"})
        if cache_path is not None:
            with contextlib.suppress(OSError):  # a read-only RUN: the cards are shown, just not kept
                write_text(cache_path, json.dumps({"config": asdict(config), "cards": cached}) + "\n")
    out = []
    for s in similar:
        card = {k: v for k, v in cached[s["case_id"]].items() if k != "label"}
        out.append({**s, **card})
    return out


def _read_cache(path: Path | None, config: CardConfig) -> dict[str, dict[str, Any]]:
    if path is None or not path.is_file():
        return {}
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged cache is rebuilt, not trusted
    same = d.get("config") == json.loads(json.dumps(asdict(config)))
    return dict(d.get("cards", {})) if same else {}


__all__ = ["CARDS_FILE", "CardConfig", "case_card", "note_snippet", "png_base64", "similar_cards", "thumbnail"]
