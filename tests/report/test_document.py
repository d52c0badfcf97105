"""The HTML and PDF reports: the content a reader needs is there as real text, export mode shows no identifier,
outside text is escaped, long text stays on the page, and the writers are atomic."""

from __future__ import annotations

import base64
import html
import io
import itertools
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pypdf import PdfReader

from workbench.errors import WorkbenchError
from workbench.report.content import (
    DISCLAIMER,
    KeyImage,
    ModelProvenance,
    Patient,
    ReportContent,
    SourceSeries,
)
from workbench.report.html import render_html, write_html
from workbench.report.pdf import render_pdf

IDENTIFIERS = ["MRN123", "Doe", "Jane", "19550129", "ACC9"]
DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def _png() -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5), dpi=50)
    FigureCanvasAgg(fig)
    fig.add_subplot().plot([0, 1, 2], [1, 0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def sample_content(mode: str) -> ReportContent:
    """A full report's content; the patient's identifiers are filled in both modes, so export mode must drop them."""
    return ReportContent(
        case_id="site_a_007", mode=mode, created="2024-05-02T10:30:00+00:00", probability=0.37,
        interval=(0.31, 0.42), interval_method="Venn-Abers", prediction_set=["benign", "malignant"],
        coverage_target=0.9, refer=True, refer_reasons=["the 90% set holds both classes"], diameter_mm=8.4,
        finding_site="right lung", nodule_center_lps_mm=(-60.0, -20.5, 110.0),
        modality_contributions={"ct": 0.55, "notes": 0.45}, attention_rollout={"ct": 0.6, "notes": 0.4},
        top_phrases=[("smoker", 0.8), ("stable", -0.4)], key_images=[KeyImage("CT slices with attribution", _png())],
        model=ModelProvenance(name="nodule-workbench fused CT + note model", version="abc123",
                              training_sites=["hospital_a", "hospital_b"], federated=True,
                              epsilon={"hospital_a": 0.99, "hospital_b": 0.98}, delta=1e-5),
        patient=Patient("MRN123", "Doe^Jane", "19550129", "F", "ACC9"),
        source=SourceSeries("2.25.1234", "2.25.5678", "2.25.9012", "1.2.840.10008.5.1.4.1.1.2",
                            ["2.25.1111", "2.25.2222"]),
        notes=["the note's last sentence was cut at 256 tokens"],
        uncertain_line="Model uncertain: needs a radiologist's read (its risk lies where this hospital's benign and "
                       "malignant cases overlap)",
        recommendation="Fleischner 2017: CT at 6-12 months, then consider CT at 18-24 months.", brock_risk=0.0712,
        fleischner_risk="high (Brock 7.1% >= 5% (ACCP low-risk bound))",
        guideline_assumptions=["nodule count: only the marked nodule was measured (taken as a single nodule)"])


class _Checker(HTMLParser):
    """Records the images and fails on a tag closed out of order or left open (void elements aside)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Checker:
    p = _Checker()
    p.feed(page)
    p.close()
    assert p.stack == [], f"left open: {p.stack}"
    return p


def _pdf_text(path: Path) -> tuple[PdfReader, str]:
    reader = PdfReader(path)
    words = " ".join(page.extract_text() for page in reader.pages)
    return reader, " ".join(words.split())


EXPECTED = ["37%", "[31%, 42%]", "Venn-Abers", "{benign, malignant}", "Decision support, not a diagnosis",
            "Model uncertain: needs a radiologist", "Fleischner 2017: CT at 6-12 months", "Brock (PanCan) risk",
            "only the marked nodule",
            "8.4 mm", "right lung", "abc123", "smoker", "+0.800", "-0.400", "ε = 0.99", "2.25.5678", "256 tokens"]


def test_pdf_is_a4_with_the_report_as_extractable_text(tmp_path: Path) -> None:
    out = render_pdf(sample_content("export"), tmp_path / "report.pdf")
    reader, text = _pdf_text(out)
    assert len(reader.pages) >= 2
    for page in reader.pages:
        assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)  # A4, points
    for s in EXPECTED:
        assert s in text, s
    assert text.count("Decision support, not a diagnosis") >= 3  # the box on page 1 and every page's footer


def test_html_is_well_formed_self_contained_and_embeds_the_key_image() -> None:
    content = sample_content("export")
    page = render_html(content)
    p = _parse(page)
    text = " ".join(" ".join(p.text).split())
    for s in [*EXPECTED, "Pulmonary nodule malignancy risk — decision-support report", "export: de-identified",
              "technical reasons", DISCLAIMER]:
        assert s in text, s
    assert text.count(DISCLAIMER) == 2  # the box at the top and the footer
    assert [i["src"][:22] for i in p.imgs] == ["data:image/png;base64,"]
    assert base64.b64decode(p.imgs[0]["src"][22:]) == content.key_images[0].png
    assert not re.search(r"(src|href)=\"(?!data:)", page) and "<script" not in page  # nothing fetched or run


def test_no_referral_flag_when_the_case_is_not_referred(tmp_path: Path) -> None:
    content = sample_content("export")
    content.refer, content.refer_reasons = False, []
    text = " ".join(_parse(render_html(content)).text)
    assert "not flagged as uncertain" in text and "Model uncertain" not in text
    assert "not flagged as uncertain" in _pdf_text(render_pdf(content, tmp_path / "r.pdf"))[1]


def test_export_mode_shows_no_identifier_and_clinical_mode_does(tmp_path: Path) -> None:
    export = sample_content("export")
    page = DATA_URI.sub("", render_html(export))  # base64 can spell anything; only the page's own text counts
    reader, text = _pdf_text(render_pdf(export, tmp_path / "export.pdf"))
    meta = " ".join(str(v) for v in (reader.metadata or {}).values())
    for ident in IDENTIFIERS:
        assert ident not in page and ident not in text and ident not in meta, ident
    assert "de-identified export" in page and "de-identified export" in text

    clinical = sample_content("clinical")
    page = DATA_URI.sub("", render_html(clinical))
    text = _pdf_text(render_pdf(clinical, tmp_path / "clinical.pdf"))[1]
    for s in ["MRN123", "Jane Doe", "1955-01-29", "ACC9", "Mode: clinical"]:  # PN "Doe^Jane" read as "Jane Doe"
        assert s in page and s in text, s
    with pytest.raises(WorkbenchError, match="report mode 'Clinical'"):
        render_html(sample_content("Clinical"))


def test_outside_text_is_escaped_in_html_and_printed_literally_in_pdf(tmp_path: Path) -> None:
    content = sample_content("export")
    attack = '<script>alert("x")</script>'
    content.finding_site = attack
    content.notes = [attack, "cost $5^2$ & more"]
    content.top_phrases = [(attack, 0.5)]
    content.key_images[0].title = f'" onerror="{attack}'
    page = render_html(content)
    assert "<script" not in page and page.count("&lt;script&gt;") >= 4
    p = _parse(page)
    assert p.imgs[0]["alt"] == f'" onerror="{attack}' and "onerror" not in p.imgs[0]  # stayed one attribute value
    text = _pdf_text(render_pdf(content, tmp_path / "r.pdf"))[1]
    assert "cost $5^2$ & more" in text and attack in text  # no mathtext: a dollar sign is a dollar sign


def _word_boxes(path: Path) -> list[tuple[int, float, float, float, float, float, str]]:
    """Every word poppler finds in the PDF: (page, page width, xMin, yMin, xMax, yMax, word) in points."""
    out = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, timeout=60).stdout
    boxes, page, width = [], 0, 0.0
    for line in out.splitlines():
        if m := re.search(r'<page width="([\d.]+)"', line):
            page, width = page + 1, float(m.group(1))
        elif m := re.search(r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*)</word>', line):
            boxes.append((page, width, *(float(v) for v in m.groups()[:4]), html.unescape(m.group(5))))
    return boxes


def test_long_text_is_wrapped_onto_further_pages_without_overlap(tmp_path: Path) -> None:
    content = sample_content("export")
    content.notes = ["W" * 400, " ".join(f"word{i}" for i in range(1200))]
    content.refer_reasons = ["a reason that goes on " * 30]
    content.top_phrases = [(f"phrase{i}", (-1) ** i / (i + 1)) for i in range(40)]
    content.model.training_sites = [f"hospital_{i:02d}" for i in range(60)]
    reader, text = _pdf_text(render_pdf(content, tmp_path / "long.pdf"))
    assert len(reader.pages) >= 4
    squashed = text.replace(" ", "")
    assert "W" * 400 in squashed and all(f"word{i}" in text for i in range(1200))  # nothing dropped at a break
    assert all(f"phrase{i}" in text for i in range(40)) and "hospital_59" in text
    if not shutil.which("pdftotext"):  # poppler's word boxes (.ci/run installs poppler-utils)
        return
    boxes = _word_boxes(tmp_path / "long.pdf")
    assert len(boxes) > 1200
    margin = 0.4 * 72  # points: no word closer than 0.4 inch to either side, none below or above the page
    for page, width, x0, y0, x1, y1, word in boxes:
        assert x0 >= margin and x1 <= width - margin and y0 >= 0 and y1 <= 842, (page, word, x0, x1, y0, y1)
    for (a, b) in itertools.combinations(boxes, 2):
        if a[0] == b[0]:
            overlap = min(a[4], b[4]) - max(a[2], b[2]) > 0.5 and min(a[5], b[5]) - max(a[3], b[3]) > 0.5
            assert not overlap, (a, b)


def test_writers_replace_atomically_and_leave_no_temp_file(tmp_path: Path) -> None:
    content = sample_content("export")
    out = tmp_path / "reports" / "site_a_007"
    html_path = write_html(content, out / "report.html")
    pdf_path = render_pdf(content, out / "report.pdf")
    assert html_path.read_text(encoding="utf-8") == render_html(content)
    assert pdf_path.read_bytes().startswith(b"%PDF-")
    content.probability = 0.81
    write_html(content, html_path)  # over an existing report
    render_pdf(content, pdf_path)
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.pdf"]
    assert "81%" in html_path.read_text(encoding="utf-8") and "81%" in _pdf_text(pdf_path)[1]
    with pytest.raises(WorkbenchError):
        render_pdf(sample_content("other"), out / "broken.pdf")
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.pdf"]


def test_a_seeded_dp_run_is_marked_not_private_in_html_and_pdf(tmp_path) -> None:  # noqa: ANN001
    import dataclasses

    from pypdf import PdfReader

    content = sample_content("export")
    assert "not private" not in render_html(content)
    content.model = dataclasses.replace(content.model, dp_secure=False)
    assert "not private: seeded randomness" in " ".join(_parse(render_html(content)).text)
    pdf = render_pdf(content, tmp_path / "r.pdf")
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "seeded randomness" in " ".join(text.split())
