"""The report as a PDF, read from ``ReportContent`` only (wording in ``wording``), laid out by fpdf2.

A4 portrait: page 1 the summary (patient, finding, risk, modality contributions, provenance), then the key images,
the note's top phrases and the notes. fpdf2 wraps text to the column and starts a new page when the next piece
does not fit, so nothing runs off a page. The font is DejaVu Sans, the TrueType font matplotlib ships, embedded
as a subset: fpdf2's core fonts are latin-1 only, and ε, δ, — and • must print as themselves and stay real text
a reader can search and copy. Text is never parsed as markup: a ``$`` or ``<`` in a note is printed as is.
Pictures are the PNGs the explanation drew (``KeyImage``); the contribution bars are drawn by fpdf2 itself.

Export mode shows no identifier of the patient (``wording``) and the PDF's metadata names the case only. The
whole document is built in memory and written through ``workbench.atomic``: an error leaves no file behind.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from workbench.atomic import write_bytes
from workbench.report.content import KeyImage, ReportContent
from workbench.report.wording import (
    TITLE,
    clinical,
    contribution_rows,
    finding_rows,
    guideline_rows,
    interval_line,
    mode_line,
    patient_rows,
    pct,
    phrase_colour,
    provenance_rows,
    set_line,
    share,
    uncertainty_line,
)

MARGIN_X, MARGIN_TOP, FOOTER = 18.0, 15.0, 22.0  # mm: side margins, top margin, room kept for the footer
FONT = "DejaVu"
GREY, DARK = "#555555", "#222222"
GATE, ROLLOUT = "#4c72b0", "#dd8452"  # the bars' colours, as in the explanation's gate picture
MAX_IMAGE_H = 112.0  # mm: a key image is scaled down to this height at most


def _font_file(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


def _lh(size: float) -> float:
    """Line height in mm for a font size in points (1.35 times the size: lines never touch)."""
    return size * 1.35 * 25.4 / 72


class _Report(FPDF):
    """An A4 page with the disclaimer and the page number in every footer."""

    def __init__(self, content: ReportContent) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.content = content
        self.add_font(FONT, "", _font_file("DejaVuSans.ttf"))
        self.add_font(FONT, "B", _font_file("DejaVuSans-Bold.ttf"))
        self.set_margins(MARGIN_X, MARGIN_TOP, MARGIN_X)
        self.set_auto_page_break(True, margin=FOOTER)
        self.c_margin = 0  # text starts exactly at the margin
        self.set_title(f"{TITLE} ({content.case_id})")
        self.set_subject(content.disclaimer)
        self.set_creator("nodule-workbench")
        self.set_lang("en")

    def footer(self) -> None:
        self.set_y(-FOOTER + 6)
        self.style(7, colour=GREY)
        self.multi_cell(0, _lh(7), self.content.disclaimer, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.cell(0, _lh(7), f"case {self.content.case_id} · page {self.page_no()}", align="R")

    def style(self, size: float, bold: bool = False, colour: str = DARK) -> None:
        self.set_font(FONT, "B" if bold else "", size)
        self.set_text_color(colour)

    @property
    def width(self) -> float:
        return self.w - self.l_margin - self.r_margin

    def line_count(self, text: str, width: float) -> int:
        """How many lines ``text`` takes in a column ``width`` mm wide, in the current font."""
        lines = self.multi_cell(width, 1, text, align="L", dry_run=True, output="LINES")
        return len(lines) if isinstance(lines, list) else 1

    def need(self, height: float) -> None:
        """A new page unless ``height`` mm still fit above the footer."""
        if self.will_page_break(height):
            self.add_page()

    def text_block(self, text: str, size: float = 9.5, bold: bool = False, colour: str = DARK, indent: float = 0.0,
                   gap: float = 1.2, **kw: Any) -> None:
        """``text`` wrapped to the column (less ``indent``), flowing onto the next page when it is long."""
        self.set_x(self.l_margin + indent)
        self.style(size, bold, colour)
        self.multi_cell(self.width - indent, _lh(size), text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT, **kw)
        self.ln(gap)

    def heading(self, text: str) -> None:
        self.need(20)  # a heading never ends a page alone
        self.ln(3)
        self.text_block(text, size=12.5, bold=True, gap=0.6)
        self.set_draw_color("#cccccc")
        self.set_line_width(0.2)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(2)

    def rows(self, rows: list[tuple[str, str]], size: float = 9.5, key_width: float = 52.0) -> None:
        """Label and value side by side, the value wrapped in its own column; a row is never split over pages."""
        for k, v in rows:
            self.style(size)
            lines = max(self.line_count(k, key_width - 2), self.line_count(v, self.width - key_width))
            self.need(lines * _lh(size))
            y = self.get_y()
            self.style(size, colour=GREY)
            self.multi_cell(key_width - 2, _lh(size), k, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.set_xy(self.l_margin + key_width, y)
            self.style(size)
            self.multi_cell(self.width - key_width, _lh(size), v, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.set_y(y + lines * _lh(size) + 0.6)

    def badge(self, text: str, fill: str, colour: str, size: float = 11) -> None:
        """``text`` on a filled box as wide as the text."""
        self.style(size, bold=True, colour=colour)
        self.set_fill_color(fill)
        self.cell(self.get_string_width(text) + 6, _lh(size) + 2, text, fill=True, align="C",
                  new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1.5)


def _contribution_chart(pdf: _Report, content: ReportContent) -> None:
    """Gate weight and attention rollout per modality as horizontal bars with their values."""
    rows = contribution_rows(content)
    if not rows:
        pdf.text_block("no modality contributions recorded")
        return
    label_w, bar_w, bar_h = 28.0, 100.0, 4.2
    pdf.need(8 + len(rows) * (2 * bar_h + 3))
    x0 = pdf.l_margin + label_w
    y = pdf.get_y()
    for i, (label, colour) in enumerate((("gate weight", GATE), ("attention rollout", ROLLOUT))):  # the legend
        lx = x0 + i * 45
        pdf.set_fill_color(colour)
        pdf.rect(lx, y + 1, 3, 3, style="F")
        pdf.set_xy(lx + 4.5, y)
        pdf.style(8, colour=GREY)
        pdf.cell(38, 5, label)
    y += 7
    for name, gate, rollout in rows:
        pdf.set_xy(pdf.l_margin, y)
        pdf.style(9)
        pdf.cell(label_w - 2, 2 * bar_h, name)
        for j, (value, colour) in enumerate(((gate, GATE), (rollout, ROLLOUT))):
            by = y + j * bar_h
            pdf.set_fill_color("#eeeeee")
            pdf.rect(x0, by + 0.4, bar_w, bar_h - 0.8, style="F")
            if value:
                pdf.set_fill_color(colour)
                pdf.rect(x0, by + 0.4, bar_w * min(max(value, 0.0), 1.0), bar_h - 0.8, style="F")
            pdf.set_xy(x0 + bar_w + 2, by)
            pdf.style(8)
            pdf.cell(30, bar_h, share(value))
        y += 2 * bar_h + 3
    pdf.set_xy(pdf.l_margin, y)


def _key_image(pdf: _Report, img: KeyImage) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(img.png)) as im:
            im.load()
            w_px, h_px = im.size
    except Exception as exc:  # noqa: BLE001 - a broken picture is said on the page, the rest of the report stands
        pdf.text_block(f"{img.title}: the image could not be decoded ({type(exc).__name__})", colour="#b2182b")
        return
    # the size it was drawn for (the explanation's pictures are 110 dpi), never blown up to more than the column
    width = min(pdf.width, max(w_px / 110 * 25.4, 63.5))
    height = width * h_px / max(w_px, 1)
    if height > MAX_IMAGE_H:
        width, height = width * MAX_IMAGE_H / height, MAX_IMAGE_H
    pdf.style(10, bold=True)
    title_h = pdf.line_count(img.title, pdf.width) * _lh(10)
    pdf.need(title_h + 1.5 + height)
    pdf.text_block(img.title, size=10, bold=True, gap=1.5)
    pdf.image(io.BytesIO(img.png), x=pdf.l_margin + (pdf.width - width) / 2, y=pdf.get_y(), w=width, h=height)
    pdf.set_y(pdf.get_y() + height + 5)


def build_pdf(content: ReportContent) -> FPDF:
    """The report as an fpdf2 document, not yet written."""
    clinical(content)  # an unknown mode is refused before anything is laid out
    pdf = _Report(content)
    pdf.add_page()
    pdf.text_block(TITLE, size=14, bold=True, gap=0.8)
    pdf.text_block(f"Mode: {mode_line(content)}", colour=GREY, gap=3)
    pdf.set_draw_color("#c77700")
    pdf.set_fill_color("#fff4e0")
    pdf.set_line_width(0.5)
    pdf.text_block(content.disclaimer, size=10, bold=True, border=1, fill=True, padding=(2.5, 3), gap=2)
    pdf.heading("Patient")
    pdf.rows(patient_rows(content))
    pdf.heading("Finding")
    pdf.text_block(content.finding, bold=True)
    pdf.rows(finding_rows(content))
    pdf.heading("Risk")
    pdf.text_block(f"Estimated malignancy risk: {pct(content.probability)}", size=14, bold=True)
    pdf.text_block(interval_line(content), gap=0.4)
    pdf.text_block(set_line(content), gap=2.5)
    if content.refer:
        pdf.set_fill_color("#b2182b")
        pdf.text_block(uncertainty_line(content) or "", size=10.5, bold=True, colour="#ffffff", fill=True,
                       padding=(1.5, 2.5), gap=1.5)
        for r in content.refer_reasons:
            pdf.text_block(f"technical: {r}", indent=4, gap=0.6, size=8.5, colour=GREY)
    else:
        pdf.badge("model not flagged as uncertain", fill="#eeeeee", colour=GREY, size=9.5)
    if guideline_rows(content):
        pdf.heading("Guidelines (decision support)")
        pdf.rows(guideline_rows(content))
    pdf.heading("Modality contributions")
    _contribution_chart(pdf, content)
    pdf.heading("Provenance")
    pdf.rows(provenance_rows(content), size=8.5)

    pdf.add_page()
    pdf.heading("Key images")
    for img in content.key_images:
        _key_image(pdf, img)
    if not content.key_images:
        pdf.text_block("no key images")
    pdf.heading("Note: top phrases")
    if content.top_phrases:
        pdf.text_block("Words of the de-identified note the model weighed most (red raised the risk, blue lowered it):",
                       gap=2)
        for w, v in content.top_phrases:
            pdf.text_block(f"{w}   {v:+.3f}", bold=True, colour=phrase_colour(v), indent=4, gap=0.6)
    else:
        pdf.text_block("no note attribution")
    pdf.heading("Notes")
    for n in content.notes or ["none"]:
        pdf.text_block(f"• {n}", indent=4, gap=0.6)
    return pdf


def render_pdf(content: ReportContent, path: str | Path) -> Path:
    """The PDF report at ``path`` (A4 portrait, extractable text), written atomically."""
    data = bytes(build_pdf(content).output())
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, data)
    return out


__all__ = ["build_pdf", "render_pdf"]
