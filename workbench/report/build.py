"""``workbench report RUN CASE_ID --site SITE_DIR --out DIR [--format pdf,html,sr,fhir] [--clinical]``.

Gathers one ``ReportContent`` from the case explained in memory (``workbench.explain.case.CaseExplanation``:
prediction, explanation, the RUN's per-site uncertainty, similar cases) plus provenance and the source series,
and renders the formats asked for into DIR: ``report.pdf``, ``report.html``, ``report_sr.dcm``,
``report_fhir.json`` and ``report.json`` (the content itself, images as their titles). The whole folder is
written through ``workbench.atomic``: a killed run leaves no half-written report. Export mode (the
default) is de-identified; ``--clinical`` keeps identifiers and original UIDs and must not leave the node.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.atomic import atomic_write
from workbench.errors import WorkbenchError
from workbench.jsonout import write_json
from workbench.report.content import KeyImage, ModelProvenance, Patient, ReportContent

if TYPE_CHECKING:
    from workbench.explain.case import CaseExplanation

FORMATS = ("pdf", "html", "sr", "fhir")


def _provenance(run: Path) -> ModelProvenance:
    weights = run / "model" / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.is_file() else "unknown"
    fed = run / "federation.json"
    if fed.is_file():
        f = json.loads(fed.read_text())
        eps = {s: float(v["lifetime"]) for s, v in f.get("epsilon", {}).items()}
        deltas = [v.get("delta") for v in f.get("epsilon", {}).values() if v.get("delta") is not None]
        sites = sorted(f.get("sites") or eps)
        # runs from before secure randomness existed carry no flag: their DP draws were seeded
        secure = all(bool(v.get("secure_randomness", False)) for v in f.get("epsilon", {}).values())
        return ModelProvenance("nodule-workbench fused CT + note model", digest, [str(s) for s in sites], True, eps,
                               float(deltas[0]) if deltas else None, dp_secure=secure)
    log = run / "train_log.json"
    sites = json.loads(log.read_text()).get("sites", []) if log.is_file() else []
    return ModelProvenance("nodule-workbench fused CT + note model", digest, sites, False)


def build_content(run: str | Path, case_id: str, site_dir: str | Path, *, clinical: bool = False,
                  steps: int = 32) -> ReportContent:
    """Everything the report says about the site's case ``case_id``, explained afresh with the RUN's model."""
    from workbench.explain.case import explain_case

    return report_content(explain_case(run, case_id, site_dir, steps=steps), site_dir, clinical=clinical)


def report_content(ce: CaseExplanation, site_dir: str | Path, *, clinical: bool = False) -> ReportContent:
    """The report's content from a case explained in memory; ``site_dir`` holds the node's UID secret."""
    from workbench.explain.figures import case_figures
    from workbench.report.key_image import measurement_png
    from workbench.report.source import node_secret, read_source
    from workbench.runtime.nodule_card import nodule_card

    case, exp, a = ce.case, ce.explanation, ce.assessment
    mode = "clinical" if clinical else "export"
    source, patient = (read_source(case.series_dir, case.case_id, mode, None if clinical else node_secret(site_dir))
                       if case.series_dir is not None else (None, Patient()))
    notes = list(exp.notes)
    image, measurement = ce.measured if ce.measured is not None else _measured(case)
    measured = nodule_card(case, notes, image, probability=ce.risk, interval=a.interval if a is not None else None,
                           measurement=measurement)
    x = case.nodule_lps_mm[0] if case.nodule_lps_mm else 0.0
    left = measured["lobe"].startswith("L") if measured.get("lobe") else x > 0  # LPS: +x is the patient's left
    figures = case_figures(ce)
    images = [KeyImage(t, png) for t, png in (
        ("CT: the axial slice the nodule was measured on, its measured outline in green (lung window)",
         measurement_png(image[0].numpy(), np.asarray(image.affine), measurement)
         if image is not None and measurement is not None else None),
        ("CT: three slices through the most attributed voxel (Integrated Gradients; red raises the risk)",
         figures.ct_slices), ("the de-identified note, words shaded by attribution", figures.note),
        ("how much each modality counted (gate)", figures.gate)) if png is not None]
    return ReportContent(
        case_id=case.case_id, mode=mode, created=datetime.now(UTC).isoformat(timespec="seconds"),
        probability=ce.risk,
        interval=a.interval if a is not None else None,
        interval_method=(f"{a.interval_method}, {a.interval_calib_cases} cases"
                         if a is not None and a.interval_method else None),
        prediction_set=list(a.prediction_set) if a is not None else [],
        coverage_target=a.coverage_target if a is not None else None, refer=a.refer if a is not None else False,
        refer_reasons=list(a.reasons) if a is not None else [],
        uncertain_line=a.uncertain_line if a is not None else None, diameter_mm=measured.get("mean_diameter_mm"),
        finding_site="left lung" if left else "right lung",
        nodule_center_lps_mm=case.nodule_lps_mm, modality_contributions=dict(exp.gate),
        attention_rollout=dict(exp.rollout), top_phrases=exp.top_words(),
        key_images=images, model=_provenance(Path(ce.run)), patient=patient, source=source, notes=notes, **measured)


def _measured(case: Any) -> tuple[Any, Any]:
    """The case's CT series and the nodule measured on it, once for the card and the key image; (None, None) when
    either cannot be had (the card then says why)."""
    from workbench.data.dicom_io import load_ct_series
    from workbench.runtime.measure import measure_image

    if case.series_dir is None or case.nodule_lps_mm is None:
        return None, None
    try:
        image = load_ct_series(case.series_dir)
        return image, measure_image(image, case.nodule_lps_mm, where=case.case_id)
    except WorkbenchError:
        return None, None


def write_report(run: str | Path, case_id: str, site_dir: str | Path, out_dir: str | Path, *,
                 formats: tuple[str, ...] = FORMATS, clinical: bool = False, steps: int = 32,
                 explanation: CaseExplanation | None = None) -> dict[str, Any]:
    """The reports of one case into ``out_dir``. ``explanation``: the case already explained (``explain_case``),
    so a caller that shows the explanation too does not compute it twice."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise WorkbenchError(f"--format {','.join(formats)}: expected a comma list of {', '.join(FORMATS)}")
    if explanation is not None and explanation.case.case_id != case_id:
        raise WorkbenchError(f"case {case_id}: the explanation given is of case {explanation.case.case_id}")
    content = (report_content(explanation, site_dir, clinical=clinical) if explanation is not None
               else build_content(run, case_id, site_dir, clinical=clinical, steps=steps))
    out = Path(out_dir)
    written = []
    with atomic_write(out) as tmp:
        tmp.mkdir(parents=True)
        if "pdf" in formats:
            from workbench.report.pdf import render_pdf

            written.append(render_pdf(content, tmp / "report.pdf"))
        if "html" in formats:
            from workbench.report.html import write_html

            written.append(write_html(content, tmp / "report.html"))
        if "sr" in formats and content.source is not None:
            from workbench.report.sr import write_sr

            written.append(write_sr(content, tmp / "report_sr.dcm"))
        elif "sr" in formats:
            content.notes.append("no DICOM SR: the case has no CT series to reference")
        if "fhir" in formats:
            from workbench.report.fhir import write_fhir

            written.append(write_fhir(content, tmp / "report_fhir.json"))
        write_json(tmp / "report.json", content.to_dict())
    return {"case_id": case_id, "mode": content.mode, "out": str(out), "probability": content.probability,
            "refer": content.refer, "files": sorted([p.name for p in written] + ["report.json"]),
            "notes": content.notes}


__all__ = ["FORMATS", "build_content", "report_content", "write_report"]
