"""One case explained in memory: ``explain_case(RUN, CASE_ID, SITE_DIR)`` -> ``CaseExplanation``.

Everything a reader of the case needs, as typed objects: the case, its ``Prediction``, its ``Explanation``, the
RUN's per-site uncertainty ``Assessment`` (None when the RUN was never calibrated) and the site's most similar
training cases. Nothing is written here: ``workbench.explain.export.write_explanation`` makes the files a person
opens, and ``workbench.report.build`` makes a report from the same object, so neither has to read the other's
files back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.case import Case
from workbench.explain.attributions import Explanation, explain
from workbench.runtime.predict import Prediction
from workbench.runtime.run_uncertainty import Assessment


@dataclass
class CaseExplanation:
    case: Case
    prediction: Prediction
    explanation: Explanation  # its notes hold the prediction's and the uncertainty's notes too
    assessment: Assessment | None  # None: the RUN has not been calibrated (``workbench calibrate``)
    # the site's most similar training cases: case_id, site, label, similarity (w * nodule cosine + (1 - w) * fused
    # cosine: nodule_weight, nodule_cosine, fused_cosine), de-identified note
    similar: list[dict[str, Any]] = field(default_factory=list)
    run: str | Path = ""  # the RUN as the caller named it (echoed in explanation.json)
    steps: int = 32  # Integrated Gradients path points
    # the CT series and the nodule measured on it when the caller already has them (``workbench predict``), so the
    # report does not load and measure the series again; None: the report measures it
    measured: tuple[Any, Any] | None = None

    @property
    def risk(self) -> float:
        """The one risk to state: the assessment's (inside its interval) when the RUN is calibrated, else the
        prediction's calibrated probability."""
        return self.assessment.probability if self.assessment is not None else self.prediction.probability

    @property
    def ct_patch(self) -> np.ndarray | None:
        """The (P, P, P) nodule patch the CT attribution explains, or None when the CT was not attributed."""
        if self.explanation.ct_attribution is None:
            return None
        return self.prediction.inputs["ct_patch"][0, 0].float().numpy()


def explain_case(run: str | Path, case_id: str, site_dir: str | Path, steps: int = 32) -> CaseExplanation:
    """Predict, explain and assess the site's case ``case_id`` with the RUN's model (unknown case: CaseError)."""
    from workbench.data.cache import PreprocessCache, default_cache_dir
    from workbench.data.case import find_site_case
    from workbench.runtime.predict import predict
    from workbench.runtime.run import load_run

    site = Path(site_dir)
    case = find_site_case(site, case_id)
    model, calibration = load_run(run)
    pred = predict(model, case, calibration=calibration, cache=PreprocessCache(default_cache_dir()))
    exp = explain(model, pred.inputs, case_id, steps=steps)
    exp.notes = [*pred.notes, *exp.notes]
    assessment, similar = case_uncertainty(Path(run), site.name, case_id, model, pred, exp.notes)
    return CaseExplanation(case, pred, exp, assessment, similar, run=run, steps=steps)


def case_uncertainty(run: Path, site: str, case_id: str, model: Any, pred: Prediction, notes: list[str], *,
                     loaded: dict[str, Any] | None = None) -> tuple[Assessment | None, list[dict[str, Any]]]:
    """The case's set, interval and refer flag from its site's calibrators, and its site's most similar training
    cases (the site's own index only); (None, []) with a note when the RUN has not been calibrated.

    ``loaded``: a dict the caller keeps across calls (a screen scoring many cases), in which the RUN's calibrators
    and each site's index are kept once read, instead of being read from disk for every case."""
    import torch

    from workbench.runtime.inference import capture_nodule, nodule_rows
    from workbench.runtime.run_uncertainty import UNCERTAINTY_FILE, RunUncertainty, site_index

    cache = {} if loaded is None else loaded
    if "uncertainty" not in cache:
        cache["uncertainty"] = RunUncertainty.load(run) if (run / UNCERTAINTY_FILE).is_file() else None
    unc = cache["uncertainty"]
    if unc is None:
        notes.append(f"no uncertainty for this RUN: run `workbench calibrate {run} COHORT` for sets, intervals, "
                     "the refer flag and similar cases")
        return None, []
    if pred.fused is not None and pred.nodule is not None:  # read off the prediction's own forward pass
        fused, nodule = pred.fused, pred.nodule
    else:
        batch = {k: v for k, v in pred.inputs.items() if k != "label"}
        with torch.no_grad(), capture_nodule(model) as found:
            fused = model.forward_batch(batch).fused.float().numpy()
        nodule = nodule_rows(found, batch["modality_mask"], len(fused)).numpy()
    if f"index:{site}" not in cache:
        cache[f"index:{site}"] = site_index(run, site)
    index = cache[f"index:{site}"]
    a = unc.assess(site, np.array([pred.logit]), fused, index, nodule)[0]
    similar = index.similar(fused[0], k=5, exclude=case_id, nodule=nodule[0]) if index is not None else []
    if index is None:
        notes.append(f"no similar-case index for site {site!r} in this RUN (indexes never serve another site)")
    elif index.legacy:
        notes.append(f"similar cases of {site} by the fused embedding alone (an index saved before they were "
                     f"compared by the nodule too): re-run `workbench calibrate {run} COHORT` to match by the nodule")
    return a, similar


__all__ = ["CaseExplanation", "case_uncertainty", "explain_case"]
