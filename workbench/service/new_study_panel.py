"""The new-study screen of ``notebooks/05_new_study.ipynb``: a study from the hospital's PACS, scored and sent back.

``NewStudyPanel(pacs, run, site=..., target=...).widget`` lists the studies the PACS holds (Orthanc's REST API:
date, description, modalities, number of images; patient identifiers only when "show patient identifiers" is
ticked, as the PACS holds them: this is the hospital's own use), downloads the chosen one into a private temporary
folder, opens its CT in the viewer, takes the nodule from a click in "mark nodule" mode or from the radiologist's
mark stored in the study (an SR with a point, else a SEG), takes the note from the text box, and scores it with
``workbench predict``'s own code (``predict_study_details``: the same risk for the same files and point): risk,
interval, prediction set, the refer flag with its plain reasons, the gate, the nodule card, the attribution overlay
in the viewer and the report's key images, and the site's similar training cases. "Send report to PACS" C-STOREs
the study's DICOM SR (clinical mode: filed in the same study) to the PACS and says what it answered.

Every step is a method (``refresh``, ``open``, ``use_mark``, ``mark``, ``score``, ``send``), so a notebook runs the
same screen headless. A step that cannot be done (no study, no nodule, a point outside the CT, a PACS that does not
answer) shows its reason in the panel's status line instead of a traceback.
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.report.study import DEFAULT_NODE_DIR
from workbench.service.config import PacsTarget
from workbench.service.pacs_client import OrthancClient

CALLING_AET = "WORKBENCH"


def study_rows(pacs: OrthancClient) -> list[dict[str, Any]]:
    """One row per study the PACS holds: Orthanc id, date, description, modalities, number of images, and the
    patient identifiers as the PACS holds them (name, id, accession number)."""
    rows = []
    for study in pacs.studies():
        tags, patient = study.get("MainDicomTags", {}), study.get("PatientMainDicomTags", {})
        series = pacs.get(f"/studies/{study['ID']}/series")
        modalities = sorted({s.get("MainDicomTags", {}).get("Modality", "?") for s in series})
        rows.append({"id": study["ID"], "date": tags.get("StudyDate", ""), "description": tags.get("StudyDescription", ""),
                     "modalities": modalities, "images": sum(len(s.get("Instances", [])) for s in series),
                     "patient_name": patient.get("PatientName", ""), "patient_id": patient.get("PatientID", ""),
                     "accession": tags.get("AccessionNumber", "")})
    return sorted(rows, key=lambda r: (r["date"], r["id"]), reverse=True)


def study_label(n: int, row: dict[str, Any], identifiers: bool) -> str:
    """The study list's line: without identifiers the study is named by its place in the list and the first
    characters of the PACS's own id (a hash)."""
    d = row["date"]
    date = f"{d[:4]}-{d[4:6]}-{d[6:]}" if len(d) == 8 and d.isdigit() else d
    what = f"{row['description'] or 'no description'} · {'+'.join(row['modalities'])} · {row['images']} images"
    if identifiers:
        return f"{date} · {row['patient_name']} ({row['patient_id']}) · acc. {row['accession']} · {what}"
    return f"study {n + 1} · {what} · PACS id {row['id'][:8]}"


def upload_sandbox_study(pacs: OrthancClient, cohort: str | Path, folder: str | Path) -> tuple[str, Any]:
    """Fill a sandbox PACS: the first test case with a CT of a generated cohort's first site, with a point mark
    SR at the generator's nodule centre (written into ``folder``). Returns the Orthanc study id and the Case."""
    from workbench.data.case import load_cases
    from workbench.runtime.run import site_dirs_of
    from workbench.runtime.study import write_point_mark

    case = next((c for site in site_dirs_of(cohort) for c in load_cases(site)
                 if c.split == "test" and c.has_ct and c.series_dir is not None and c.nodule_lps_mm is not None), None)
    if case is None or case.series_dir is None or case.nodule_lps_mm is None:
        raise WorkbenchError(f"{cohort}: no test case with a CT and a nodule centre to put into the sandbox PACS")
    files = sorted(p for p in Path(case.series_dir).iterdir() if p.is_file())
    Path(folder).mkdir(parents=True, exist_ok=True)
    study = ""
    for f in [*files, write_point_mark(files[0], case.nodule_lps_mm, Path(folder) / "mark.dcm")]:
        study = str(pacs.upload(f)["ParentStudy"])
    return study, case


def key_images_html(report_html: str) -> str:
    """The report's figures (key images: the CT with the attribution, the measured slice, the gate), without the
    rest of the page (which names the patient in clinical mode)."""
    return "".join(re.findall(r"<figure>.*?</figure>", report_html, flags=re.S))


def _error(text: str) -> str:
    return f"<div class='new-study-error' style='color:#b2182b;font-family:sans-serif'>{html.escape(text)}</div>"


def _info(text: str) -> str:
    return f"<div style='font-family:sans-serif'>{html.escape(text)}</div>"


class NewStudyPanel:
    """The module docstring's screen. ``target``: the PACS's DICOM address for the SR (AE title, host, port)."""

    def __init__(self, pacs: OrthancClient, run: str | Path, *, site: str = "", target: PacsTarget | None = None,
                 calling_aet: str = CALLING_AET, note: str | Path | None = None,
                 node_dir: str | Path = DEFAULT_NODE_DIR, steps: int = 32) -> None:
        import ipywidgets as w

        self.pacs, self.run, self.site, self.steps = pacs, Path(run), site, steps
        self.target, self.calling_aet, self.node_dir = target, calling_aet, Path(node_dir)
        self.work = Path(tempfile.mkdtemp(prefix="workbench-new-study-"))  # the study's files: removed at exit
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.work, True)
        self.rows: list[dict[str, Any]] = []
        self.study: Any = None  # runtime.study.StudyFiles of the open study
        self.study_id: str | None = None
        self.folder: Path | None = None
        self.image: Any = None
        self.mark_file: Path | None = None
        self.point: tuple[float, float, float] | None = None
        self.point_source = ""  # "click" or "mark"
        self.result: dict[str, Any] | None = None
        self.details: Any = None
        self.viewer: Any = None
        self._opened = 0

        self.identifiers = w.Checkbox(value=False, description="show patient identifiers", indent=False)
        self.identifiers.add_class("new-study-ids")
        self.studies = w.Dropdown(options=[], description="study", layout=w.Layout(width="720px"))
        self.studies.add_class("new-study-list")
        self.refresh_button = w.Button(description="refresh list", icon="refresh")
        self.open_button = w.Button(description="open", icon="folder-open", button_style="primary")
        self.open_button.add_class("new-study-open")
        self.status = w.HTML()
        self.status.add_class("new-study-status")
        self.viewer_box = w.VBox(layout=w.Layout(flex="0 0 auto", max_width="600px"))
        self.point_html = w.HTML("<i>no nodule marked yet: switch on <b>mark nodule</b> and click its centre</i>")
        self.point_html.add_class("new-study-point")
        self.use_mark_button = w.Button(description="use the radiologist's mark", disabled=True,
                                        layout=w.Layout(width="220px"))
        self.use_mark_button.add_class("new-study-use-mark")
        self.note = w.Textarea(value=Path(note).read_text(encoding="utf-8") if note else "",
                               placeholder="paste the clinical note here (optional: without it the CT alone is read)",
                               layout=w.Layout(width="100%", height="120px"))
        self.note.add_class("new-study-note")
        self.score_button = w.Button(description="Score", icon="calculator", button_style="primary")
        self.score_button.add_class("new-study-score")
        self.send_button = w.Button(description="Send report to PACS", icon="upload", disabled=True,
                                    layout=w.Layout(width="200px"))
        self.send_button.add_class("new-study-send")
        self.risk, self.card, self.gate, self.explanation = w.HTML(), w.HTML(), w.HTML(), w.HTML()
        self.similar, self.notes, self.sent = w.HTML(), w.HTML(), w.HTML()
        self.risk.add_class("new-study-risk")
        self.sent.add_class("new-study-sent")

        self.identifiers.observe(lambda _: self._relabel(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.open_button.on_click(lambda _: self.open())
        self.use_mark_button.on_click(lambda _: self.use_mark())
        self.score_button.on_click(lambda _: self.score())
        self.send_button.on_click(lambda _: self.send())
        panels = w.VBox([self.point_html, self.use_mark_button, w.HTML("<b>note</b>"), self.note,
                         w.HBox([self.score_button, self.send_button]), self.risk, self.card, self.gate, self.sent],
                        layout=w.Layout(flex="1 1 auto", min_width="380px", overflow="auto"))
        self.widget = w.VBox([w.HBox([self.studies, self.open_button, self.refresh_button]), self.identifiers,
                              self.status, w.HBox([self.viewer_box, panels]), self.explanation, self.similar,
                              self.notes])
        self.refresh()

    # --- the study ----------------------------------------------------------------------------------------------
    def refresh(self) -> list[dict[str, Any]]:
        """The PACS's study list, again."""
        try:
            self.rows = study_rows(self.pacs)
        except (OSError, ValueError) as exc:
            self.status.value = _error(f"PACS {self.pacs.url} did not answer the study list ({exc})")
            return []
        self._relabel()
        self.status.value = _info(f"{len(self.rows)} studies in the PACS")
        return self.rows

    def _relabel(self) -> None:
        chosen = self.studies.value
        ids = [r["id"] for r in self.rows]
        self.studies.options = [(study_label(n, r, self.identifiers.value), r["id"]) for n, r in enumerate(self.rows)]
        self.studies.value = chosen if chosen in ids else (ids[0] if ids else None)  # the newest by default

    def open(self, study_id: str | None = None) -> bool:
        """Download the study (the chosen one, or ``study_id``) and show its CT; True when it opened."""
        from workbench.data.dicom_io import load_ct_series
        from workbench.errors import CaseError
        from workbench.runtime.study import scan_study, series_folder
        from workbench.service.worker import find_mark
        from workbench.ui.ct_viewer import CTViewer, series_layers

        study_id = study_id or self.studies.value
        if not study_id:
            self.status.value = _error("no study chosen (the PACS list is empty?)")
            return False
        if study_id != self.studies.value and study_id in [r["id"] for r in self.rows]:
            self.studies.value = study_id
        self._reset()
        self.status.value = _info("downloading the study ...")
        self._opened += 1
        folder = self.work / f"study{self._opened}"
        try:
            self.pacs.download_study(study_id, folder)
            study = scan_study(folder)
            with series_folder(study) as series:
                image = load_ct_series(series)
            layers = series_layers(image)
            viewer = CTViewer(layers["hu"], spacing_mm=layers["spacing_mm"], origin_ras=layers["origin_ras"])
        except (WorkbenchError, OSError, ValueError) as exc:
            self.status.value = _error(f"the study could not be opened: {exc}")
            shutil.rmtree(folder, ignore_errors=True)
            return False
        for old in self.work.iterdir():  # the previous study's files go as soon as another is open
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        self.study, self.study_id, self.folder, self.image, self.viewer = study, study_id, folder, image, viewer
        viewer.on_mark(self.mark)
        self.viewer_box.children = [viewer.widget]
        try:
            self.mark_file = find_mark(study.others)
        except CaseError:
            self.mark_file = None
        self.use_mark_button.disabled = self.mark_file is None
        self.status.value = _info(f"opened: CT of {len(study.ct)} images"
                                  + ("; the study holds a radiologist's mark" if self.mark_file else
                                     "; no radiologist's mark in the study: click the nodule"))
        return True

    def _reset(self) -> None:
        self.point, self.point_source, self.result, self.details, self.mark_file = None, "", None, None, None
        self.use_mark_button.disabled, self.send_button.disabled = True, True
        for out in (self.risk, self.card, self.gate, self.explanation, self.similar, self.notes, self.sent):
            out.value = ""
        self.point_html.value = "<i>no nodule marked yet: switch on <b>mark nodule</b> and click its centre</i>"

    # --- the nodule ---------------------------------------------------------------------------------------------
    def mark(self, lps_mm: tuple[float, float, float]) -> None:
        """The nodule's centre from a click (the viewer's ``on_mark``), LPS mm."""
        self.point, self.point_source = (float(lps_mm[0]), float(lps_mm[1]), float(lps_mm[2])), "click"
        self._show_point()

    def use_mark(self) -> bool:
        """The nodule's centre from the radiologist's mark in the study; True when it could be read."""
        from workbench.runtime.study import nodule_from_file

        if self.study is None or self.mark_file is None:
            self.status.value = _error("the open study holds no radiologist's mark: click the nodule instead")
            return False
        try:
            point = nodule_from_file(self.mark_file, self.study.ct)
        except WorkbenchError as exc:
            self.status.value = _error(str(exc).replace(str(self.work), "the study"))
            return False
        self.point, self.point_source = point, "mark"
        if self.viewer is not None:
            self.viewer.set_marker(self.viewer.scene.lps_to_voxel(np.asarray(point)), move=True)
        self._show_point()
        return True

    def _show_point(self) -> None:
        assert self.point is not None
        x, y, z = self.point
        where = "clicked" if self.point_source == "click" else "the radiologist's mark"
        self.point_html.value = (f"<div class='new-study-point-value' data-lps='{x!r},{y!r},{z!r}' "
                                 f"style='font-family:sans-serif'><b>nodule</b> ({where}): x {x:.2f}, y {y:.2f}, "
                                 f"z {z:.2f} mm (LPS)</div>")
        self.status.value = _info("nodule set: press Score")

    # --- the risk -----------------------------------------------------------------------------------------------
    def score(self) -> dict[str, Any] | None:
        """Score the open study at the nodule set, with the note in the box; the result (None: why, in the
        status line)."""
        from workbench.atomic import write_text
        from workbench.report.study import StudyRequest, predict_study_details

        if self.study is None or self.folder is None:
            self.status.value = _error("open a study first")
            return None
        if self.point is None:
            self.status.value = _error("no nodule: switch on 'mark nodule' and click its centre, or use the "
                                       "radiologist's mark")
            return None
        note = None
        if self.note.value.strip():
            note = self.work / "note.txt"
            write_text(note, self.note.value)
        self._opened += 1
        out = self.work / f"report{self._opened}"
        by_mark = self.point_source == "mark"
        req = StudyRequest(self.run, self.folder, nodule=None if by_mark else self.point,
                           nodule_from=self.mark_file if by_mark else None, note=note, site=self.site, report=out,
                           clinical=True, node_dir=self.node_dir, steps=self.steps, study=self.study)
        self.status.value = _info("scoring ...")
        self.send_button.disabled = True
        try:
            result, details = predict_study_details(req)
        except WorkbenchError as exc:
            self.status.value = _error(f"not scored: {str(exc).replace(str(self.work), 'the study')}")
            return None
        except Exception as exc:  # noqa: BLE001 - the screen shows what went wrong instead of a traceback
            self.status.value = _error(f"not scored ({type(exc).__name__}): {exc}")
            return None
        self.result, self.details = result, details
        self._show_result(result, details)
        self.send_button.disabled = not any(str(f).endswith("report_sr.dcm") for f in result.get("files", []))
        self.status.value = _info("scored" + ("" if not self.send_button.disabled else
                                              ": no SR written, nothing to send"))
        return result

    def _show_result(self, result: dict[str, Any], details: Any) -> None:
        from workbench.ui.panels import gate_html, nodule_card_html, risk_html

        p = float(result["probability"])
        refer = result.get("refer")
        plain = ("refer: " + "; ".join(result.get("refer_reasons") or []) if refer else
                 "not flagged for referral" if refer is not None else "no refer flag (not calibrated)")
        self.risk.value = (f"<div class='new-study-result' data-probability='{p!r}' "
                           f"data-lps='{','.join(repr(float(v)) for v in result['nodule_lps_mm'])}'>"
                           + risk_html(p, details.assessment)
                           + f"<div class='new-study-refer' style='font-family:sans-serif'>{html.escape(plain)}</div>"
                           + "</div>")
        self.card.value = nodule_card_html(details.card, result.get("notes", []))
        self.gate.value = gate_html(result.get("gate") or {})
        self._show_explanation(result, details)
        self._show_similar(details)
        self.notes.value = "".join(f"<div><i>{html.escape(n.replace(str(self.work), 'the study'))}</i></div>"
                                   for n in result.get("notes", []))

    def _show_explanation(self, result: dict[str, Any], details: Any) -> None:
        from workbench.ui.ct_viewer import series_layers

        exp = details.explanation
        attribution = getattr(exp, "ct_attribution", None) if exp is not None else None
        if self.viewer is not None and details.image is not None:
            layers = series_layers(details.image, tuple(result["nodule_lps_mm"]), attribution, details.measurement)
            self.viewer.set_layers(layers.get("overlay"), layers.get("mask"))
        report = next((Path(f) for f in result.get("files", []) if str(f).endswith("report.html")), None)
        figures = key_images_html(report.read_text(encoding="utf-8")) if report is not None else ""
        head = ("<b>explanation</b>: the attribution is drawn over the CT (red raised the risk, blue lowered it; "
                "<i>jump to peak</i> goes to its strongest slice)" if attribution is not None else
                "<b>explanation</b>: <i>no CT attribution (the CT was not read)</i>")
        self.explanation.value = (f"<div style='font-family:sans-serif'>{head}</div>"
                                  + (f"<details><summary>the report's key images</summary>{figures}</details>"
                                     if figures else ""))

    def _show_similar(self, details: Any) -> None:
        from workbench.ui.panels import similar_html

        if not self.site:
            self.similar.value = ("<div class='similar'><i>similar cases: no site named (WORKBENCH_SITE), and "
                                  "similar-case indexes never serve another site</i></div>")
            return
        self.similar.value = "<b>the site's most similar training cases</b>" + similar_html(details.similar)

    # --- the PACS -----------------------------------------------------------------------------------------------
    def send(self) -> bool:
        """C-STORE the scored study's SR to the PACS; True when the PACS took it."""
        from workbench.service.outbound import c_store

        if self.result is None:
            self.sent.value = _error("score the study first")
            return False
        if self.target is None:
            self.sent.value = _error("no PACS DICOM address configured (WORKBENCH_PACS_AET, _HOST, _DICOM_PORT)")
            return False
        sr = next((Path(f) for f in self.result.get("files", []) if str(f).endswith("report_sr.dcm")), None)
        if sr is None:
            self.sent.value = _error("no DICOM SR was written for this study: nothing to send")
            return False
        where = f"{self.target.ae_title}@{self.target.host}:{self.target.port}"
        try:
            c_store(sr, self.target, self.calling_aet)
        except WorkbenchError as exc:
            self.sent.value = _error(f"not sent: {exc}")
            return False
        except OSError as exc:
            self.sent.value = _error(f"not sent to {where}: {exc}")
            return False
        self.sent.value = _info(f"sent: the SR (risk {float(self.result['probability']):.1%}) was stored by "
                                f"{where}")
        return True

    def close(self) -> None:
        """Remove the downloaded study and the reports from this machine."""
        self._cleanup()


__all__ = ["NewStudyPanel", "key_images_html", "study_label", "study_rows", "upload_sandbox_study"]
