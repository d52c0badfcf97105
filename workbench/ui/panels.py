"""The case-review panels: note with highlighted words, gate bar, risk badge, similar cases, case browser, what-if.

Each panel is a small function from plain data (an explanation's words and scores, an uncertainty ``Assessment``,
a list of cases) to an ipywidget, so the notebooks stay thin and the HTML they show can be tested without a
browser. Every text shown is escaped; notes are the de-identified text the model read, never the raw note.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from workbench.runtime.run_uncertainty import Assessment


def note_html(words: list[str], scores: np.ndarray | list[float], text: str | None = None) -> str:
    """The note with words shaded by attribution: red raised the risk, blue lowered it (the strongest word fully
    coloured). Given ``text`` (the de-identified note), the note is shown as written, line breaks and case kept;
    without it, the model's lowercased words."""
    from workbench.explain.export import highlighted_text, highlighted_words

    if text is not None:
        return ("<div class='note-view' style='line-height:1.7;font-family:sans-serif;white-space:pre-wrap'>"
                f"{highlighted_text(text, words, scores)}</div>")
    return f"<div class='note-view' style='line-height:1.9;font-family:sans-serif'>{highlighted_words(words, scores)}</div>"


def gate_html(gate: dict[str, float], present: dict[str, bool] | None = None) -> str:
    rows = []
    for m, v in gate.items():
        absent = present is not None and not present.get(m, True)
        rows.append(f"<div style='font-family:sans-serif'>{html.escape(m)} "
                    f"<span style='display:inline-block;width:{int(200 * v)}px;height:10px;background:#4c72b0'></span> "
                    f"{v:.0%}{' (absent)' if absent else ''}</div>")
    return "<div class='gate-bar'><b>modality contributions (gate)</b>" + "".join(rows) + "</div>"


def risk_html(probability: float, uncertainty: Assessment | None) -> str:
    """Risk, interval, conformal set, and a refer badge (or why there is none)."""
    parts = [f"<div class='risk' style='font-family:sans-serif'><span style='font-size:1.6em'>risk {probability:.0%}</span>"]
    if uncertainty:
        lo, hi = uncertainty.interval
        parts.append(f" &nbsp; interval [{lo:.0%}, {hi:.0%}] ({html.escape(uncertainty.interval_method)}, "
                     f"{uncertainty.interval_calib_cases} cases)")
        parts.append(f"<br>{uncertainty.coverage_target:.0%} set: "
                     f"{{{html.escape(', '.join(uncertainty.prediction_set))}}}")
        if uncertainty.refer:
            reasons = "; ".join(html.escape(r) for r in uncertainty.reasons)
            parts.append(f"<br><span class='refer-badge' style='background:#b2182b;color:white;padding:2px 8px;"
                         f"border-radius:4px'>{html.escape(uncertainty.uncertain_line or '')}</span>"
                         f"<details style='font-size:0.85em;color:#555'><summary>technical reasons</summary>{reasons}"
                         "</details>")
        else:
            parts.append("<br><span style='color:#2b7a2b'>model not flagged as uncertain</span>")
    else:
        parts.append("<br><i>not calibrated: run <code>workbench calibrate RUN COHORT</code> for sets and intervals</i>")
    return "".join(parts) + "</div>"


def nodule_card_html(card: dict[str, Any], notes: list[str] | None = None) -> str:
    """The nodule card (``workbench.runtime.nodule_card.nodule_card``): size, type, solid part, lobe, margin, count,
    Lung-RADS, the lead guideline's recommendation and Brock, or why it was not measured; checks the reader should
    make by eye in amber, a model-vs-Brock disagreement in red."""
    from workbench.runtime.nodule_card import LOBE_WORDS, type_words

    if not card:
        why = "; ".join(html.escape(n) for n in (notes or []) if n.startswith("size:")) or "not measured"
        return f"<div class='nodule-card' style='font-family:sans-serif'><b>nodule</b><br><i>{why}</i></div>"
    kind = type_words(card["nodule_type"], card.get("solid_component_mm"))
    rows = [("size", f"{card['long_axis_mm']:.1f} x {card['short_axis_mm']:.1f} mm (mean {card['mean_diameter_mm']:.1f} mm)"),
            ("volume", f"{card['volume_mm3']:,.0f} mm3"), ("type", kind),
            ("lobe", LOBE_WORDS.get(card["lobe"], card["lobe"]))]
    if card.get("spiculated") is not None:
        rows.append(("margin", "spiculated (measured)" if card["spiculated"] else "no spiculation measured"))
    if card.get("nodule_count") is not None:
        rows.append(("count", f"{card['nodule_count']} (the marked nodule; others not searched)"))
    if card.get("lung_rads"):
        rows.append(("Lung-RADS v2022", f"{card['lung_rads']}: {card.get('lung_rads_management') or ''}"))
    if card.get("recommendation"):
        rows.append(("recommendation", f"{card['recommendation']} (decision support)"))
    if card.get("brock_risk") is not None:
        rows.append(("Brock risk", f"{card['brock_risk']:.0%} (measured nodule + the note's facts)"))
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    caveats = "".join(f"<div style='color:#9a6700'>check by eye: {html.escape(c)}</div>"
                      for c in card.get("measurement_caveats", []))
    if card.get("model_brock_disagreement"):
        caveats += f"<div style='color:#b2182b'>{html.escape(card['model_brock_disagreement'])}</div>"
    assumed = "; ".join(card.get("guideline_assumptions", []))
    if assumed:
        caveats += f"<div style='color:#555;font-size:0.85em'>assumed: {html.escape(assumed)}</div>"
    return ("<div class='nodule-card' style='font-family:sans-serif'><b>nodule, measured from the CT</b>"
            f"<table style='font-size:0.95em'>{body}</table>{caveats}</div>")


def similar_html(similar: list[dict[str, Any]], max_note: int = 140) -> str:
    """The site's most similar training cases, one row each: CT thumbnail (axial, lung window, radiological
    orientation, 40 mm around the nodule), the nodule as measured (mean diameter, long x short axis, type, lobe) or
    why it was not, the outcome, the similarity with the nodule and patient cosines it is made of, and at most
    ``max_note`` characters of the de-identified note's risk facts (``similar_cards.note_snippet``; never the
    header). Rows come from ``SiteIndex.similar`` merged with ``workbench.ui.similar_cards.similar_cards``; a row
    without a card shows what it has."""
    from workbench.runtime.nodule_card import LOBE_WORDS, type_words

    if not similar:
        return "<div class='similar'><i>no similar-case index for this site</i></div>"
    esc = html.escape
    rows = []
    weight = None
    for s in similar:
        if s.get("thumbnail_png"):
            mm = s.get("thumbnail_mm", 40)
            thumb = (f"<img src='data:image/png;base64,{esc(s['thumbnail_png'])}' width='64' height='64' "
                     f"alt='axial CT, {mm:g} mm around the nodule' title='axial, lung window, {mm:g} mm field, "
                     "patient right on the left'>")
        else:
            thumb = f"<i>{esc(s.get('no_thumbnail') or 'no thumbnail')}</i>"
        if s.get("mean_diameter_mm") is not None:
            size = f"{s['mean_diameter_mm']:.1f} mm"
            if s.get("long_axis_mm") is not None and s.get("short_axis_mm") is not None:
                size += f" ({s['long_axis_mm']:.1f} x {s['short_axis_mm']:.1f})"
            kind = type_words(s["nodule_type"], s.get("solid_component_mm") if s.get("nodule_type") == "part_solid"
                              else None) if s.get("nodule_type") else ""
            lobe = LOBE_WORDS.get(s.get("lobe") or "", s.get("lobe") or "")
        elif s.get("unmeasured"):
            size, kind, lobe = f"<i>not measured: {esc(s['unmeasured'])}</i>", "", ""
        else:
            size, kind, lobe = "", "", ""
        sim = f"{s['similarity']:.2f}"
        if s.get("nodule_weight"):
            weight = s["nodule_weight"]
            parts = [f"{name} {s[key]:.2f}" for name, key in (("nodule", "nodule_cosine"), ("patient", "fused_cosine"))
                     if s.get(key) is not None]
            if parts:
                sim += f"<br><span style='color:#555;font-size:0.85em'>{esc(', '.join(parts))}</span>"
        snippet = (s.get("snippet") or "")
        snippet = snippet if len(snippet) <= max_note else snippet[:max_note] + "..."
        outcome = "malignant" if s["label"] else "benign"
        rows.append(f"<tr><td>{thumb}</td><td>{esc(s['case_id'])}</td><td><b>{outcome}</b></td>"
                    f"<td>{size if size.startswith('<i>') else esc(size)}</td><td>{esc(kind)}</td><td>{esc(lobe)}</td>"
                    f"<td>{sim}</td><td>{esc(snippet)}</td></tr>")
    how = (f"similarity = {weight:.1f} x nodule (CT reader) + {1 - weight:.1f} x patient (fused) cosine"
           if weight else "similarity: cosine of the fused embedding")
    return ("<div class='similar'><b>most similar training cases of this site</b>"
            f"<div style='color:#555;font-size:0.85em'>{esc(how)}</div><table style='font-family:sans-serif;"
            "font-size:0.9em'><tr><th>CT</th><th>case</th><th>outcome</th><th>size (mean, long x short)</th>"
            "<th>type</th><th>lobe</th><th>similarity</th><th>note (risk facts)</th></tr>"
            f"{''.join(rows)}</table></div>")


def case_browser(cases: list[dict[str, Any]], on_select: Callable[[str], None]) -> Any:
    """Site filter, label filter, text search over the case id, uncertain-only toggle; calls ``on_select(case_id)``.

    ``cases``: dicts with case_id, site, label (0/1/None) and refer (bool or None), and optionally risk (0-1) and
    lung_rads; each row of the list shows them as columns (``case_row``)."""
    import ipywidgets as w

    sites = w.Dropdown(options=["all", *sorted({c["site"] for c in cases})], value="all", description="site")
    labels = w.Dropdown(options=["all", "benign", "malignant"], value="all", description="label")
    search = w.Text(placeholder="case id contains...", description="search")
    refer = w.Checkbox(value=False, description="uncertain only")
    pick = w.Select(options=[], rows=8, description="cases", layout=w.Layout(width="640px"))
    pick.add_class("case-list")
    by_id = {c["case_id"]: c for c in cases}

    def matching() -> list[str]:
        out = []
        for c in cases:
            if sites.value != "all" and c["site"] != sites.value:
                continue
            if labels.value != "all" and c.get("label") != (labels.value == "malignant"):
                continue
            if search.value and search.value.lower() not in c["case_id"].lower():
                continue
            if refer.value and not c.get("refer"):
                continue
            out.append(c["case_id"])
        return out

    quiet = [False]  # set while the rows are re-labelled: the chosen case stays chosen and is not reloaded

    def refresh(*_: object) -> None:
        keep = pick.value
        quiet[0] = True
        try:
            pick.options = [(case_row(by_id[i]), i) for i in matching()]
            if keep in matching():
                pick.value = keep
        finally:
            quiet[0] = False

    def chosen(change: dict[str, Any]) -> None:
        if change["new"] and not quiet[0]:
            on_select(change["new"])

    for ctrl in (sites, labels, search, refer):
        ctrl.observe(refresh, names="value")
    pick.observe(chosen, names="value")
    refresh()
    box = w.VBox([w.HBox([sites, labels]), w.HBox([search, refer]), pick])
    box.matching = matching  # type: ignore[attr-defined]
    box.select = pick  # type: ignore[attr-defined]
    box.refresh = refresh  # type: ignore[attr-defined]  # re-label the rows after their values changed

    def choose(case_id: str) -> None:
        """Highlight ``case_id`` without calling ``on_select`` (the caller shows it)."""
        quiet[0] = True
        try:
            pick.value = case_id
        finally:
            quiet[0] = False

    box.choose = choose  # type: ignore[attr-defined]
    return box


def case_row(c: dict[str, Any]) -> str:
    """One line of the case list: id, site, risk, Lung-RADS and the uncertainty flag, in fixed columns."""
    risk = f"{c['risk']:.0%}" if c.get("risk") is not None else "-"
    flag = "uncertain" if c.get("refer") else ("" if c.get("refer") is not None else "not assessed")
    return (f"{c['case_id']:<18} {c['site']:<12} risk {risk:>4}   Lung-RADS {c.get('lung_rads') or '-':<3}   "
            f"{flag}").rstrip()


def what_if(note: str, rescore: Callable[[str], float],
            flag: Callable[[str, str, float, float], str | None] | None = None) -> Any:
    """Edit the (de-identified) note and re-score: ``rescore(text) -> probability``. The result is shown against the
    original note's risk; ``flag(original, edited, p_before, p_after)`` (``explain.counterfactual.direction_flag``)
    names a change whose direction contradicts the published risk factors."""
    import ipywidgets as w

    text = w.Textarea(value=note, layout=w.Layout(width="100%", height="140px"), description="note")
    button = w.Button(description="re-score", button_style="primary")
    before = rescore(note)
    result = w.HTML(f"risk with the original note: {before:.0%}")

    def go(_: object) -> None:
        after = rescore(text.value)
        change = round(100 * after) - round(100 * before)
        line = (f"risk with this note: {after:.0%} (original {before:.0%}, "
                f"{'no change' if change == 0 else f'{change:+d} points'})")
        warning = flag(note, text.value, before, after) if flag is not None else None
        if warning:
            line += f"<div class='what-if-flag' style='color:#b2182b;font-weight:600'>{html.escape(warning)}</div>"
        result.value = line

    button.on_click(go)
    box = w.VBox([text, button, result])
    box.rescore = go  # type: ignore[attr-defined]
    box.text, box.result = text, result  # type: ignore[attr-defined]
    return box


__all__ = ["case_browser", "case_row", "gate_html", "note_html", "risk_html", "similar_html", "what_if"]
