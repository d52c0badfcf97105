"""``workbench predict``: one study from outside any cohort scored, its nodule card made, its reports written.

The study's pieces are found by ``workbench.runtime.study`` (CT series, the radiologist's mark, the note); the risk
is the one every other path states: the model's calibrated logit through the named site's calibrators (the
stated risk inside its interval, the conformal set and the refer flag), exactly as ``explain_case`` computes
it for a case in a cohort, so the same files give the same number. ``--report`` explains the case (Integrated
Gradients) and writes the four reports; without it nothing is explained and nothing is written.

Without ``--site`` the RUN's pooled calibrators are used where it has them (a DP RUN pools nothing: then the
probability is the RUN's global calibration with no interval, and a note says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

DEFAULT_NODE_DIR = Path.home() / ".local" / "share" / "workbench" / "node"  # the node's UID secret lives here


@dataclass(frozen=True)
class StudyRequest:
    run: Path
    dicom: Path
    nodule: tuple[float, float, float] | None = None  # LPS mm
    nodule_from: Path | None = None  # an SR or SEG mark
    note: Path | None = None
    site: str = ""  # whose calibrators; "" = pooled
    report: Path | None = None
    clinical: bool = False
    node_dir: Path = DEFAULT_NODE_DIR
    steps: int = 32
    fast: bool = False  # score with the RUN's ONNX export (workbench fast); explanations stay in PyTorch
    study: Any = None  # ``dicom`` already scanned (``runtime.study.scan_study``'s StudyFiles): not read again


@dataclass
class StudyDetails:
    """What ``predict_study`` computes on its way and does not put in its JSON, for a screen that shows the study:
    the loaded series (``load_ct_series``), the nodule measurement (None: not measurable), the assessment
    (``case_uncertainty``; None: no calibrators), the site's similar training cases and, with ``report``, the
    explanation (``explain``: ``ct_attribution`` is the nodule patch's map)."""

    image: Any = None
    measurement: Any = None
    assessment: Any = None
    card: dict[str, Any] = field(default_factory=dict)
    similar: list[dict[str, Any]] = field(default_factory=list)
    explanation: Any = None


def predict_study(req: StudyRequest) -> dict[str, Any]:
    """The result JSON (module docstring); with ``req.report`` the reports too (``files``)."""
    return predict_study_details(req)[0]


def predict_study_details(req: StudyRequest) -> tuple[dict[str, Any], StudyDetails]:
    """``predict_study``'s result and the objects behind it (``StudyDetails``): one computation, so a screen shows
    the very risk ``workbench predict`` states for the same files and point."""
    import time

    from workbench.data.cache import PreprocessCache, default_cache_dir
    from workbench.data.dicom_io import load_ct_series
    from workbench.explain.case import case_uncertainty
    from workbench.report.source import node_secret
    from workbench.runtime.measure import measure_image
    from workbench.runtime.nodule_card import nodule_card
    from workbench.runtime.predict import predict
    from workbench.runtime.run import load_run
    from workbench.runtime.study import (
        check_inside,
        make_case,
        nodule_from_file,
        read_note,
        scan_study,
        series_folder,
        study_case_id,
    )

    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(1000 * (now - t0), 1)
        t0 = now

    if (req.nodule is None) == (req.nodule_from is None):
        raise WorkbenchError("give the nodule once: --nodule X,Y,Z (LPS mm) or --nodule-from MARK.dcm (SR or SEG)")
    study = req.study if req.study is not None else scan_study(req.dicom)
    note = read_note(req.note) if req.note is not None else None
    req.node_dir.mkdir(parents=True, exist_ok=True)
    case_id = study_case_id(study.study_uid or study.ct_series_uid, node_secret(req.node_dir))
    notes = list(study.notes)
    if note is None:
        notes.append("no note given: the CT alone was read")
    with series_folder(study) as folder:
        image = load_ct_series(folder)
        point = req.nodule if req.nodule is not None else nodule_from_file(req.nodule_from, study.ct)  # type: ignore[arg-type]
        check_inside(point, image, str(req.nodule_from or req.dicom))
        case = make_case(case_id, req.site or "unnamed", folder, point, note)
        lap("load")
        model, calibration = load_run(req.run)
        scorer = model
        if req.fast:
            from workbench.runtime.fast import FastModel

            scorer = FastModel(req.run, model)  # type: ignore[assignment]
        lap("model")
        pred = predict(scorer, case, calibration=calibration, cache=PreprocessCache(default_cache_dir()))
        lap("predict")
        timings.update(pred.timings_ms)  # predict's parts: preprocess and the model's forward
        notes += pred.notes
        try:
            assessment, similar = case_uncertainty(Path(req.run), req.site, case_id, scorer, pred, notes)
        except WorkbenchError as exc:
            if req.site:
                raise
            notes.append(f"no site named and no pooled calibrators ({exc}): the RUN's global calibration, no "
                         "interval; name the site with --site")
            assessment, similar = None, []
        lap("uncertainty")
        try:
            measurement = measure_image(image, point, where=case_id)
        except WorkbenchError:  # nothing measurable at the mark: the risk stands, the card says why it has no size
            measurement = None
        probability = assessment.probability if assessment is not None else pred.probability
        interval = assessment.interval if assessment is not None else None
        card = nodule_card(case, notes, image, probability=probability, interval=interval, measurement=measurement)
        result: dict[str, Any] = {
            "case_id": case_id, "site": req.site or None, "probability": probability, "interval": interval,
            "prediction_set": list(assessment.prediction_set) if assessment is not None else None,
            "refer": assessment.refer if assessment is not None else None,
            "refer_reasons": list(assessment.reasons) if assessment is not None else [],
            "gate": pred.gate, "nodule_lps_mm": list(point), "logit": pred.logit,
            "engine": "onnxruntime" if req.fast else "pytorch", **card}
        lap("measure")
        details = StudyDetails(image, measurement, assessment, card, similar)
        if req.report is not None:
            result["files"], details.explanation = _reports(req, model, pred, case, assessment, notes,
                                                            (image, measurement), lap)
    result["notes"] = notes
    result["timings_ms"] = timings
    return result, details


def _reports(req: StudyRequest, model: Any, pred: Any, case: Any, assessment: Any, notes: list[str],
             measured: tuple[Any, Any], lap: Any) -> tuple[list[str], Any]:
    from workbench.explain.attributions import explain
    from workbench.explain.case import CaseExplanation
    from workbench.report.build import write_report

    assert req.report is not None  # the caller writes reports only when asked
    exp = explain(model, pred.inputs, case.case_id, steps=req.steps)
    lap("explain")
    exp.notes = [*notes, *exp.notes]
    ce = CaseExplanation(case, pred, exp, assessment, [], run=req.run, steps=req.steps, measured=measured)
    out = write_report(req.run, case.case_id, req.node_dir, req.report, clinical=req.clinical, explanation=ce)
    lap("report")
    return [str(Path(out["out"]) / f) for f in out["files"]], exp


__all__ = ["DEFAULT_NODE_DIR", "StudyDetails", "StudyRequest", "predict_study", "predict_study_details"]
