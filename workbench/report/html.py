"""The report as one self-contained HTML page, read from ``ReportContent`` only (wording in ``wording``).

The page needs nothing but a browser (CSS inline, images as base64 data URIs, no script, no external link), so it
can be mailed or archived as one file; every text field goes through ``html.escape``, since notes and titles come
from outside. Export mode shows no identifier of the patient. The file is written through ``workbench.atomic``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path

from workbench.atomic import write_text
from workbench.report.content import KeyImage, ReportContent
from workbench.report.wording import (
    TITLE,
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
    mode = mode_line(content)
    risk = [f'<p class="risk">Estimated malignancy risk: {_e(pct(content.probability))}</p>',
            f"<p>{_e(interval_line(content))}<br>{_e(set_line(content))}</p>"]
    if content.refer:
        reasons = "".join(f"<li>{_e(r)}</li>" for r in content.refer_reasons)
        risk.append(f'<p><span class="refer">{_e(uncertainty_line(content))}</span></p>'
                    + (f"<details><summary>technical reasons</summary><ul class=reasons>{reasons}</ul></details>"
                       if reasons else ""))
    else:
        risk.append('<p><span class="norefer">model not flagged as uncertain</span></p>')
    contrib = contribution_rows(content)
    contrib_html = ("<table><tr><th>modality</th><th>gate weight</th><th>attention rollout</th></tr>"
                    + "".join(f"<tr><td>{_e(n)}</td><td class=num>{_e(share(g))}</td>"
                              f"<td class=num>{_e(share(r))}</td></tr>" for n, g, r in contrib)
                    + "</table>") if contrib else "<p>no modality contributions recorded</p>"
    images = "".join(f'<figure><img src="{_data_uri(k)}" alt="{_e(k.title)}"><figcaption>{_e(k.title)}'
                     "</figcaption></figure>" for k in content.key_images) or "<p>no key images</p>"
    phrases = ("<p>Words of the de-identified note the model weighed most (red raised the risk, blue lowered it):"
               "</p><ul>" + "".join(f'<li><span class="phrase" style="color:{phrase_colour(v)}">{_e(w)}</span> '
                                    f'<span style="color:{phrase_colour(v)}">{v:+.3f}</span></li>'
                                    for w, v in content.top_phrases) + "</ul>"
               ) if content.top_phrases else "<p>no note attribution</p>"
    notes = ("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in content.notes) + "</ul>") if content.notes else "<p>none</p>"
    uid_keys = {"Study UID", "Series UID", "Frame of reference UID", "SOP class UID", "Version"}
    sections = [
        ("patient", "Patient", _kv_table(patient_rows(content))),
        ("finding", "Finding", f"<p><strong>{_e(content.finding)}</strong></p>" + _kv_table(finding_rows(content))),
        ("guidelines", "Guidelines (decision support)", _kv_table(guideline_rows(content))
         if guideline_rows(content) else "<p>not applied (see notes)</p>"),
        ("risk", "Risk", "".join(risk)),
        ("contributions", "Modality contributions", contrib_html),
        ("images", "Key images", images),
        ("note", "Note", phrases),
        ("provenance", "Provenance", _kv_table(provenance_rows(content), mono=lambda k: k in uid_keys)),
        ("notes", "Notes", notes),
    ]
    body = "\n".join(f'<section id="{sid}"><h2>{_e(h)}</h2>{inner}</section>' for sid, h, inner in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(TITLE)} ({_e(content.case_id)})</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{_e(TITLE)}</h1><p class=\"mode\">Mode: {_e(mode)}</p>"
            f"<div class=\"disclaimer\" role=\"note\">{_e(content.disclaimer)}</div></header>\n"
            f"<main>\n{body}\n</main>\n<footer><p>{_e(content.disclaimer)}</p></footer>\n</body>\n</html>\n")


def write_html(content: ReportContent, path: str | Path) -> Path:
    """The HTML report at ``path`` (UTF-8), written atomically."""
    page = render_html(content)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, page)
    return out


__all__ = ["render_html", "write_html"]
