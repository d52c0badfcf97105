"""The human-readable report: one self-contained HTML page and one PDF, both read from ``ReportContent`` only.

The HTML page needs nothing but a browser (CSS inline, images as base64 data URIs, no script, no external link), so
it can be mailed or archived as one file; every text field goes through ``html.escape``, since notes and titles
come from outside. The PDF is drawn with matplotlib alone (no reportlab): A4 portrait pages, fonts embedded as
TrueType (``pdf.fonttype`` 42) so the text stays real text a reader can search and copy, and mathtext off so a
``$`` in a note is printed, not parsed. Lines are wrapped and measured so nothing runs off the page; a section
that does not fit flows onto the next page.

Export mode shows no identifier of the patient even when ``Patient`` happens to carry some: the renderer does not
trust its input to have been cleaned. Both files are written to a temporary sibling and renamed, so a killed run
never leaves a half-written report under the real name.
"""

from __future__ import annotations

import base64
import html
import io
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.report.content import KeyImage, ReportContent
from workbench.runtime.privacy import NOT_PRIVATE

TITLE = "Pulmonary nodule malignancy risk — decision-support report"
A4_INCHES = (8.27, 11.69)
_POS, _NEG, _ZERO = "#b2182b", "#2166ac", "#555555"  # attribution colours: red raised the risk, blue lowered it


# --- shared wording ----------------------------------------------------------------------------------------------

def _clinical(content: ReportContent) -> bool:
    """True for clinical mode; an unknown mode is refused rather than guessed (a typo must not show identifiers)."""
    if content.mode not in ("export", "clinical"):
        raise WorkbenchError(f"case {content.case_id}: report mode {content.mode!r}: expected 'export' or 'clinical'")
    return content.mode == "clinical"


def _mode_line(content: ReportContent) -> str:
    return "clinical" if _clinical(content) else "export: de-identified"


def _pct(p: float) -> str:
    return f"{p:.0%}"


def person_name(pn: str) -> str:
    """DICOM PN "Family^Given^Middle^Prefix^Suffix" (alphabetic group) as a reader writes it: "Given Family"."""
    parts = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (p.strip() for p in parts)
    return " ".join(p for p in (prefix, given, middle, family, suffix) if p)


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


_SEX = {"M": "male", "F": "female", "O": "other"}


def _patient_rows(content: ReportContent) -> list[tuple[str, str]]:
    if not _clinical(content):
        return [("Case", content.case_id), ("Patient", "de-identified export")]
    p = content.patient
    return [("Case", content.case_id), ("Patient ID", p.patient_id or "—"), ("Name", person_name(p.name) or "—"),
            ("Birth date", _date(p.birth_date) or "—"), ("Sex", _SEX.get(p.sex, p.sex) or "—"),
            ("Accession number", p.accession_number or "—")]


def _finding_rows(content: ReportContent) -> list[tuple[str, str]]:
    rows = [("Diameter", f"{content.diameter_mm:.1f} mm" if content.diameter_mm is not None
             else "not estimated by this model"), ("Site", content.finding_site or "—")]
    if content.nodule_center_lps_mm is not None:
        rows.append(("Centre (LPS, mm)", ", ".join(f"{v:.1f}" for v in content.nodule_center_lps_mm)))
    return rows


def _interval_line(content: ReportContent) -> str:
    if content.interval is None:
        return "Interval: not available (the model has not been calibrated)"
    lo, hi = content.interval
    return f"Interval: [{_pct(lo)}, {_pct(hi)}]" + (f" ({content.interval_method})" if content.interval_method else "")


def _set_line(content: ReportContent) -> str:
    level = f"{content.coverage_target:.0%} " if content.coverage_target is not None else ""
    members = ", ".join(content.prediction_set) if content.prediction_set else "empty"
    return f"{level}prediction set: {{{members}}}"


def _contribution_rows(content: ReportContent) -> list[tuple[str, float | None, float | None]]:
    names = list(dict.fromkeys([*content.modality_contributions, *content.attention_rollout]))
    return [(n, content.modality_contributions.get(n), content.attention_rollout.get(n)) for n in names]


def _share(v: float | None) -> str:
    if v is None:
        return "—"
    return _pct(v) + (" (absent)" if v == 0 else "")


def _provenance_rows(content: ReportContent) -> list[tuple[str, str]]:
    m = content.model
    if m.epsilon:
        dp = "; ".join(f"{node}: ε = {eps:.2f}" for node, eps in m.epsilon.items())
        if m.delta is not None:
            dp += f"; δ = {m.delta:g}"
        if not m.dp_secure:
            dp += f" ({NOT_PRIVATE})"
    else:
        dp = "none"
    rows = [("Model", m.name), ("Version", m.version), ("Manufacturer", m.manufacturer),
            ("Training sites", ", ".join(m.training_sites) or "—"), ("Federated", "yes" if m.federated else "no"),
            ("Differential privacy (lifetime, per node)", dp), ("Report time", content.created)]
    s = content.source
    if s is None:
        rows.append(("Source series", "none (no CT for this case)"))
        return rows
    rows += [("Study UID", s.study_uid), ("Series UID", s.series_uid),
             ("Frame of reference UID", s.frame_of_reference_uid), ("SOP class UID", s.sop_class_uid),
             ("Referenced instances", str(len(s.sop_instance_uids)))]
    if _clinical(content):
        when = " ".join(x for x in (_date(s.study_date), s.study_time) if x)
        rows += [(k, v) for k, v in (("Study date", when), ("Study ID", s.study_id),
                                     ("Referring physician", person_name(s.referring_physician))) if v]
    if s.manufacturer:
        rows.append(("Scanner manufacturer", s.manufacturer))
    return rows


def _phrase_colour(v: float) -> str:
    return _POS if v > 0 else _NEG if v < 0 else _ZERO


# --- HTML --------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:52em;margin:1.5em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.45em;margin:.2em 0}
h2{font-size:1.1em;border-bottom:1px solid #ccc;padding-bottom:.15em;margin-top:1.4em}
.mode{color:#555;margin:.2em 0 .8em}
.disclaimer{border:2px solid #c77700;background:#fff4e0;padding:.6em .9em;border-radius:4px;font-weight:600}
table{border-collapse:collapse} td,th{padding:.15em .8em .15em 0;text-align:left;vertical-align:top}
th{color:#555;font-weight:600} td.num{text-align:right}
.risk{font-size:1.6em;font-weight:700}
.refer{display:inline-block;background:#b2182b;color:#fff;font-weight:700;padding:.3em .8em;border-radius:4px;
letter-spacing:.04em}
.norefer{display:inline-block;border:1px solid #999;color:#555;padding:.2em .7em;border-radius:4px}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{color:#444;font-size:.92em;margin-top:.3em}
.phrase{font-weight:600} .uid{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
footer{margin-top:2em;border-top:1px solid #ccc;padding-top:.6em;color:#555;font-size:.9em}
"""


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _kv_table(rows: list[tuple[str, str]], mono: Callable[[str], bool] = lambda k: False) -> str:
    body = "".join(f'<tr><th scope="row">{_e(k)}</th><td{" class=uid" if mono(k) else ""}>{_e(v)}</td></tr>'
                   for k, v in rows)
    return f"<table>{body}</table>"


def _data_uri(img: KeyImage) -> str:
    return "data:image/png;base64," + base64.b64encode(img.png).decode("ascii")


def render_html(content: ReportContent) -> str:
    """One self-contained HTML5 page of the report (see the module docstring)."""
    mode = _mode_line(content)
    risk = [f'<p class="risk">Estimated malignancy risk: {_e(_pct(content.probability))}</p>',
            f"<p>{_e(_interval_line(content))}<br>{_e(_set_line(content))}</p>"]
    if content.refer:
        reasons = "".join(f"<li>{_e(r)}</li>" for r in content.refer_reasons)
        risk.append('<p><span class="refer">REFER TO A CLINICIAN</span></p>'
                    + (f"<ul class=reasons>{reasons}</ul>" if reasons else ""))
    else:
        risk.append('<p><span class="norefer">no referral flag</span></p>')
    contrib = _contribution_rows(content)
    contrib_html = ("<table><tr><th>modality</th><th>gate weight</th><th>attention rollout</th></tr>"
                    + "".join(f"<tr><td>{_e(n)}</td><td class=num>{_e(_share(g))}</td>"
                              f"<td class=num>{_e(_share(r))}</td></tr>" for n, g, r in contrib)
                    + "</table>") if contrib else "<p>no modality contributions recorded</p>"
    images = "".join(f'<figure><img src="{_data_uri(k)}" alt="{_e(k.title)}"><figcaption>{_e(k.title)}'
                     "</figcaption></figure>" for k in content.key_images) or "<p>no key images</p>"
    phrases = ("<p>Words of the de-identified note the model weighed most (red raised the risk, blue lowered it):"
               "</p><ul>" + "".join(f'<li><span class="phrase" style="color:{_phrase_colour(v)}">{_e(w)}</span> '
                                    f'<span style="color:{_phrase_colour(v)}">{v:+.3f}</span></li>'
                                    for w, v in content.top_phrases) + "</ul>"
               ) if content.top_phrases else "<p>no note attribution</p>"
    notes = ("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in content.notes) + "</ul>") if content.notes else "<p>none</p>"
    uid_keys = {"Study UID", "Series UID", "Frame of reference UID", "SOP class UID", "Version"}
    sections = [
        ("patient", "Patient", _kv_table(_patient_rows(content))),
        ("finding", "Finding", f"<p><strong>{_e(content.finding)}</strong></p>" + _kv_table(_finding_rows(content))),
        ("risk", "Risk", "".join(risk)),
        ("contributions", "Modality contributions", contrib_html),
        ("images", "Key images", images),
        ("note", "Note", phrases),
        ("provenance", "Provenance", _kv_table(_provenance_rows(content), mono=lambda k: k in uid_keys)),
        ("notes", "Notes", notes),
    ]
    body = "\n".join(f'<section id="{sid}"><h2>{_e(h)}</h2>{inner}</section>' for sid, h, inner in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(TITLE)} ({_e(content.case_id)})</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{_e(TITLE)}</h1><p class=\"mode\">Mode: {_e(mode)}</p>"
            f"<div class=\"disclaimer\" role=\"note\">{_e(content.disclaimer)}</div></header>\n"
            f"<main>\n{body}\n</main>\n<footer><p>{_e(content.disclaimer)}</p></footer>\n</body>\n</html>\n")


def _atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write`` fills a temporary sibling, which is then renamed onto ``path`` (removed if ``write`` fails)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def write_html(content: ReportContent, path: str | Path) -> Path:
    """The HTML report at ``path`` (UTF-8), written atomically."""
    page = render_html(content)
    return _atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


# --- PDF ---------------------------------------------------------------------------------------------------------

_MARGIN_X, _TOP, _FOOTER = 0.7, 0.6, 1.0  # inches: side margins, top margin, space kept for the footer
_DPI = 150  # images are resampled at this resolution inside the PDF


class _Flow:
    """Lays text and pictures down A4 pages top to bottom, starting a new page when the next piece does not fit."""

    def __init__(self, content: ReportContent) -> None:
        self.content = content
        self.width = A4_INCHES[0] - 2 * _MARGIN_X
        self.pages: list[Any] = []
        self.new_page()

    def new_page(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=A4_INCHES, dpi=_DPI)
        self.renderer = FigureCanvasAgg(self.fig).get_renderer()
        self.pages.append(self.fig)
        self.y = A4_INCHES[1] - _TOP  # the cursor, in inches from the bottom edge
        self._footer()

    def _footer(self) -> None:
        text = "\n".join(self._wrap(self.content.disclaimer, 7, self.width, {}))
        self.fig.text(_MARGIN_X / A4_INCHES[0], 0.35 / A4_INCHES[1], text, fontsize=7, color="#555555",
                      va="bottom", ha="left", parse_math=False)
        self.fig.text(1 - _MARGIN_X / A4_INCHES[0], 0.2 / A4_INCHES[1],
                      f"case {self.content.case_id} · page {len(self.pages)}", fontsize=7, color="#555555",
                      va="bottom", ha="right", parse_math=False)

    @property
    def room(self) -> float:
        return self.y - _FOOTER

    def space(self, inches: float) -> None:
        self.y -= inches

    def need(self, inches: float) -> None:
        if self.room < inches:
            self.new_page()

    def _wrap(self, text: str, size: float, col: float, kw: dict[str, Any]) -> list[str]:
        """``text`` wrapped to ``col`` inches: by a character estimate, then narrower until the measured block fits."""
        chars = max(12, int(col * 72 / (size * 0.55)))
        while True:
            lines = [ln for para in (str(text).splitlines() or [""])
                     for ln in (textwrap.wrap(para, chars, break_on_hyphens=False) or [""])]
            probe = self.fig.text(0, 0, "\n".join(lines), fontsize=size, parse_math=False, **kw)
            wide = probe.get_window_extent(self.renderer).width / _DPI
            probe.remove()
            if wide <= col or chars <= 12:
                return lines
            chars = max(12, int(chars * min(0.95, col / wide)))

    def text(self, text: str, size: float = 9.5, indent: float = 0.0, gap: float = 0.05, box: dict | None = None,
             **kw: Any) -> None:
        """``text`` wrapped to the column, split across pages when it is longer than the room left."""
        pad = (box or {}).get("pad_in", 0.0)
        bbox = {k: v for k, v in (box or {}).items() if k != "pad_in"} or None
        left = self._wrap(text, size, self.width - indent - 2 * pad, kw)
        line_h = size * 1.5 / 72  # a little more than matplotlib's line height: the estimate never runs short
        while left:
            self.need(min(len(left), 2) * line_h + 2 * pad)
            n = max(1, int((self.room - 2 * pad) // line_h))
            chunk, left = left[:n], left[n:]
            t = self.fig.text((_MARGIN_X + indent + pad) / A4_INCHES[0], (self.y - pad) / A4_INCHES[1],
                              "\n".join(chunk), fontsize=size, va="top", ha="left", parse_math=False, bbox=bbox, **kw)
            self.y -= t.get_window_extent(self.renderer).height / _DPI + 2 * pad + gap

    def heading(self, text: str) -> None:
        self.need(0.9)
        self.space(0.12)
        self.text(text, size=12.5, weight="bold", gap=0.08)

    def rows(self, rows: list[tuple[str, str]], size: float = 9.5) -> None:
        for k, v in rows:
            self.text(f"{k}: {v}", size=size, gap=0.03)

    def axes(self, height: float, width: float | None = None) -> Any:
        """An axes ``height`` inches tall at the cursor (on a new page if it does not fit)."""
        self.need(height)
        w = self.width if width is None else width
        ax = self.fig.add_axes(((_MARGIN_X + (self.width - w) / 2) / A4_INCHES[0], (self.y - height) / A4_INCHES[1],
                                w / A4_INCHES[0], height / A4_INCHES[1]))
        self.y -= height
        return ax


def _contribution_chart(flow: _Flow, content: ReportContent) -> None:
    rows = _contribution_rows(content)
    if not rows:
        flow.text("no modality contributions recorded")
        return
    import numpy as np

    height = 0.55 + 0.42 * len(rows)
    flow.need(height + 0.7)
    flow.space(0.3)  # the legend sits above the axes
    ax = flow.axes(height, width=flow.width - 1.6)
    y = np.arange(len(rows))
    h = 0.38
    for off, idx, label, colour in ((-h / 2, 1, "gate weight", "#4c72b0"), (h / 2, 2, "attention rollout", "#dd8452")):
        vals = [r[idx] or 0.0 for r in rows]
        ax.barh(y + off, vals, height=h, color=colour, label=label)
        for yi, r, v in zip(y, rows, vals, strict=True):
            ax.text(min(v, 0.86) + 0.015, yi + off, _share(r[idx]), va="center", fontsize=7.5, parse_math=False)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["0%", "25%", "50%", "75%", "100%"], fontsize=7.5)
    ax.legend(fontsize=7.5, loc="lower right", frameon=False, bbox_to_anchor=(1.0, 1.0), ncol=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    flow.space(0.35)  # the x tick labels hang below the axes


def _key_image(flow: _Flow, img: KeyImage) -> None:
    import matplotlib.image as mpimg

    try:
        pixels = mpimg.imread(io.BytesIO(img.png), format="png")
    except Exception as exc:  # noqa: BLE001 - a broken picture is said on the page, the rest of the report stands
        flow.text(f"{img.title}: the image could not be decoded ({type(exc).__name__})", color="#b2182b")
        return
    h_px, w_px = pixels.shape[:2]
    width = min(flow.width, max(w_px / 72, 2.5))  # a small picture is not blown up to the full column
    height = width * h_px / max(w_px, 1)
    if height > 4.4:
        width, height = width * 4.4 / height, 4.4
    flow.need(height + 0.5)
    flow.text(img.title, size=10, weight="bold", gap=0.06)
    ax = flow.axes(height, width=width)
    ax.imshow(pixels, interpolation="antialiased")
    ax.set_axis_off()
    flow.space(0.2)


def _pdf_figures(content: ReportContent) -> list[Any]:
    """The report's pages as matplotlib figures (not yet saved): page 1 the summary, then the images and the note."""
    f = _Flow(content)
    f.text(TITLE, size=15, weight="bold", gap=0.06)
    f.text(f"Mode: {_mode_line(content)}", size=9.5, color="#555555", gap=0.12)
    f.text(content.disclaimer, size=10, weight="bold", gap=0.15,
           box={"boxstyle": "round,pad=0.5", "facecolor": "#fff4e0", "edgecolor": "#c77700", "pad_in": 0.08})
    f.heading("Patient")
    f.rows(_patient_rows(content))
    f.heading("Finding")
    f.text(content.finding, weight="bold", gap=0.05)
    f.rows(_finding_rows(content))
    f.heading("Risk")
    f.text(f"Estimated malignancy risk: {_pct(content.probability)}", size=14, weight="bold", gap=0.06)
    f.text(_interval_line(content), gap=0.03)
    f.text(_set_line(content), gap=0.1)
    if content.refer:
        f.text("REFER TO A CLINICIAN", size=11, weight="bold", color="white", gap=0.08,
               box={"boxstyle": "round,pad=0.4", "facecolor": "#b2182b", "edgecolor": "#b2182b", "pad_in": 0.06})
        for r in content.refer_reasons:
            f.text(f"• {r}", indent=0.15, gap=0.03)
    else:
        f.text("no referral flag", color="#555555")
    f.heading("Modality contributions")
    _contribution_chart(f, content)
    f.heading("Provenance")
    f.rows(_provenance_rows(content), size=8.5)

    f.new_page()
    f.heading("Key images")
    for img in content.key_images:
        _key_image(f, img)
    if not content.key_images:
        f.text("no key images")
    f.heading("Note: top phrases")
    if content.top_phrases:
        f.text("Words of the de-identified note the model weighed most (red raised the risk, blue lowered it):",
               gap=0.08)
        for w, v in content.top_phrases:
            f.text(f"{w}   {v:+.3f}", indent=0.15, color=_phrase_colour(v), weight="bold", gap=0.03)
    else:
        f.text("no note attribution")
    f.heading("Notes")
    for n in content.notes or ["none"]:
        f.text(f"• {n}", indent=0.15, gap=0.03)
    return f.pages


def render_pdf(content: ReportContent, path: str | Path) -> Path:
    """The PDF report at ``path`` (A4 portrait, extractable text), written atomically."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    with matplotlib.rc_context({"pdf.fonttype": 42, "text.usetex": False, "font.family": "DejaVu Sans"}):
        pages = _pdf_figures(content)

        def write(tmp: Path) -> None:
            meta = {"Title": f"{TITLE} ({content.case_id})", "Subject": content.disclaimer,
                    "Creator": "nodule-workbench"}
            with PdfPages(tmp, metadata=meta) as pdf:
                for fig in pages:
                    pdf.savefig(fig)

        return _atomic_write(path, write)


__all__ = ["TITLE", "person_name", "render_html", "render_pdf", "write_html"]
