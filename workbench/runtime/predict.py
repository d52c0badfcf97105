"""``workbench.predict(model, case)``: one case in, one ``Prediction`` out (docs/architecture.md §2).

The case's CT goes through the same preprocessing (and cache) as training, its note is de-identified and
tokenized by the model's own tokenizer; a modality the case lacks, or one that is refused, is left out and the
prediction says so (the gate gives it weight 0). A case with no usable modality is refused with its reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from workbench.data.cache import PreprocessCache
from workbench.data.case import Case
from workbench.errors import CaseError
from workbench.models.fusion import MODALITIES
from workbench.models.model import NoduleRiskModel
from workbench.runtime.calibration import Calibration
from workbench.runtime.encode import encode_cases
from workbench.runtime.inference import capture_nodule, nodule_rows


@dataclass
class Prediction:
    case_id: str
    probability: float  # calibrated when a Calibration was given, else sigmoid(logit)
    logit: float
    gate: dict[str, float]  # modality -> weight in the fused representation (0 for an absent one)
    present: dict[str, bool]  # modality -> did the model read it
    notes: list[str] = field(default_factory=list)  # why a modality was left out
    inputs: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # the batch of one, for explainers
    # the same forward's fused embedding and the CT reader's nodule vector (what the similar-case index and the
    # out-of-distribution check compare by), so scoring a case takes one forward pass
    fused: np.ndarray | None = field(default=None, repr=False)
    nodule: np.ndarray | None = field(default=None, repr=False)
    timings_ms: dict[str, float] = field(default_factory=dict)  # preprocess (crop, resample, tokenise), forward


def predict(model: NoduleRiskModel, case: Case, *, calibration: Calibration | None = None,
            cache: PreprocessCache | None = None) -> Prediction:
    """Risk of malignancy for one case. Raises CaseError when neither CT nor note can be used."""
    if model.tokenizer is None:
        raise CaseError("the model has no tokenizer; load it with workbench.models.load_model")
    t0 = time.perf_counter()
    data = encode_cases([case], model.tokenizer, cache=cache, modalities=model.modalities, progress=False,
                        max_length=model.config.text.max_length)
    t1 = time.perf_counter()
    if len(data) == 0:
        raise CaseError(f"case {case.case_id}: {data.refused[0][1]}")
    batch = data.batch(torch.arange(1))
    model.eval()
    with torch.no_grad(), capture_nodule(model) as found:
        out = model.forward_batch(batch)
    t2 = time.perf_counter()
    nodule = out.nodule if hasattr(out, "nodule") else nodule_rows(found, batch["modality_mask"], 1)  # FastModel
    logit = float(out.logits[0])
    present = {m: bool(batch["modality_mask"][0, i]) for i, m in enumerate(MODALITIES) if m in model.modalities}
    return Prediction(
        case_id=case.case_id,
        probability=float((calibration or Calibration()).apply(np.array([logit]))[0]),
        logit=logit,
        gate={m: float(out.gate[0, i]) for i, m in enumerate(model.modalities)},
        present=present,
        notes=[f"{case.case_id}: {r}" for _, r in data.refused],
        inputs=batch,
        fused=out.fused.float().numpy(),
        nodule=nodule.float().numpy(),
        timings_ms={"preprocess": round(1000 * (t1 - t0), 1), "forward": round(1000 * (t2 - t1), 1)},
    )
