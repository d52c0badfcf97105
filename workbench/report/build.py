"""``workbench report RUN CASE_ID --site SITE_DIR --out DIR [--format pdf,html,sr,fhir] [--clinical]``.

Gathers one ``ReportContent`` (prediction, explanation, the RUN's per-site uncertainty, provenance, the source
series) and renders the formats asked for into DIR: ``report.pdf``, ``report.html``, ``report_sr.dcm``,
``report_fhir.json`` and ``report.json`` (the content itself, images as their titles). The whole folder is
written into a temporary sibling and renamed: a killed run leaves no half-written report. Export mode (the
default) is de-identified; ``--clinical`` keeps identifiers and original UIDs and must not leave the node.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.report.content import KeyImage, ModelProvenance, Patient, ReportContent

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
                  steps: int = 32, work: Path | None = None) -> ReportContent:
    """Everything the report says about one case (the explanation's files land in ``work``)."""
    from workbench.explain.export import explain_case, find_case
    from workbench.report.measure import volume_equivalent_diameter
    from workbench.report.source import node_secret, read_source

    run, site = Path(run), Path(site_dir)
    case = find_case(site, case_id)
    work = work or Path(os.environ.get("TMPDIR", "/tmp")) / f"report-{case_id}"
    summary = explain_case(run, case_id, site, work, steps=steps)
    import numpy as np

    arrays = np.load(work / "explanation.npz")
    diameter = volume_equivalent_diameter(arrays["ct_patch"]) if "ct_patch" in arrays else None
    mode = "clinical" if clinical else "export"
    source, patient = (read_source(case.series_dir, case_id, mode, None if clinical else node_secret(site))
                       if case.series_dir is not None else (None, Patient()))
    u = summary.get("uncertainty") or {}
    notes = list(summary.get("notes", []))
    if diameter is not None:
        notes.append("diameter: volume-equivalent sphere of the central component above -650 HU in the model's "
                     "1.25 mm patch (a measurement, not a learned estimate)")
    x = case.nodule_lps_mm[0] if case.nodule_lps_mm else 0.0
    images = [KeyImage(t, (work / f).read_bytes()) for t, f in (
        ("CT: three slices through the most attributed voxel (Integrated Gradients; red raises the risk)",
         "ct_slices.png"), ("the de-identified note, words shaded by attribution", "note.png"),
        ("how much each modality counted (gate)", "gate.png")) if (work / f).is_file()]
    return ReportContent(
        case_id=case_id, mode=mode, created=datetime.now(UTC).isoformat(timespec="seconds"),
        probability=float(u.get("probability", summary["probability"])),
        interval=tuple(u["interval"]) if u.get("interval") else None,  # type: ignore[arg-type]
        interval_method=(f"{u['interval_method']}, {u.get('interval_calib_cases', '?')} cases"
                         if u.get("interval_method") else None), prediction_set=list(u.get("prediction_set", [])),
        coverage_target=u.get("coverage_target"), refer=bool(u.get("refer", False)),
        refer_reasons=list(u.get("reasons", [])), diameter_mm=diameter,
        finding_site="left lung" if x > 0 else "right lung",  # LPS: +x is the patient's left
        nodule_center_lps_mm=case.nodule_lps_mm, modality_contributions=dict(summary["gate"]),
        attention_rollout=dict(summary["rollout"]), top_phrases=[(w, float(v)) for w, v in summary["top_words"]],
        key_images=images, model=_provenance(run), patient=patient, source=source, notes=notes)


def write_report(run: str | Path, case_id: str, site_dir: str | Path, out_dir: str | Path, *,
                 formats: tuple[str, ...] = FORMATS, clinical: bool = False, steps: int = 32) -> dict[str, Any]:
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise WorkbenchError(f"--format {','.join(formats)}: expected a comma list of {', '.join(FORMATS)}")
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    content = build_content(run, case_id, site_dir, clinical=clinical, steps=steps, work=tmp / ".explain")
    shutil.rmtree(tmp / ".explain", ignore_errors=True)
    written = []
    if "pdf" in formats:
        from workbench.report.document import render_pdf

        written.append(render_pdf(content, tmp / "report.pdf"))
    if "html" in formats:
        from workbench.report.document import write_html

        written.append(write_html(content, tmp / "report.html"))
    if "sr" in formats and content.source is not None:
        from workbench.report.sr import write_sr

        written.append(write_sr(content, tmp / "report_sr.dcm"))
    elif "sr" in formats:
        content.notes.append("no DICOM SR: the case has no CT series to reference")
    if "fhir" in formats:
        from workbench.report.fhir import write_fhir

        written.append(write_fhir(content, tmp / "report_fhir.json"))
    (tmp / "report.json").write_text(json.dumps(content.to_dict(), indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"case_id": case_id, "mode": content.mode, "out": str(out), "probability": content.probability,
            "refer": content.refer, "files": sorted([p.name for p in written] + ["report.json"]),
            "notes": content.notes}


__all__ = ["FORMATS", "build_content", "write_report"]
