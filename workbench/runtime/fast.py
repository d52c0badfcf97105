"""The node's fast CPU path: the whole model (frozen readers and fusion) exported to ONNX and run by onnxruntime.

Why ONNX and not int8: measured side by side on this project's 2-core CPU (``workbench bench serve``), one case's
forward took 7 ms in PyTorch eager and 3 ms in onnxruntime (the model is small: 64-wide layers, where eager
PyTorch's per-operator overhead is most of the time), with outputs equal to 1e-6; dynamic int8 quantisation
replaces only the Linear layers, whose 64-wide products are not where the time goes, and changes the numbers.

``workbench fast RUN`` writes ``RUN/fast/model.onnx`` and ``RUN/fast/fast.json`` (the model weights' digest and
the largest differences measured at export). ``FastModel`` is used wherever a ``NoduleRiskModel`` is for scoring
(``predict``, ``predict_logits``-like batches): ``forward_batch`` returns logits, gate, modality logits, the fused
embedding and the CT reader's nodule vector from one onnxruntime call. A RUN whose weights changed after export is
refused (the digest), so a stale export is never used. Explanations (Captum) still run on the PyTorch model.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.atomic import atomic_write, write_text
from workbench.errors import WorkbenchError

FAST_DIR = "fast"
INPUTS = ("ct_patch", "ct_context", "ct_position", "note_ids", "note_mask", "note_values", "modality_mask")
OUTPUTS = ("logits", "gate", "modality_logits", "fused", "nodule")
TOLERANCE = 1e-4  # largest |logit| difference to PyTorch accepted at export (measured: about 1e-6)


def weights_digest(run: str | Path) -> str:
    """sha256 of the RUN's model weights (what an export was made from)."""
    h = hashlib.sha256()
    for f in sorted((Path(run) / "model").rglob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


class _Exported(torch.nn.Module):
    """The model with plain tensors in and the five outputs scoring needs out (ONNX has no dataclasses)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, ct_patch: torch.Tensor, ct_context: torch.Tensor, ct_position: torch.Tensor,
                note_ids: torch.Tensor, note_mask: torch.Tensor, note_values: torch.Tensor,
                modality_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from workbench.runtime.inference import capture_nodule

        with capture_nodule(self.model) as found:
            o = self.model(ct_patch, ct_context, ct_position, note_ids, note_mask, note_values, modality_mask)
        # inference.nodule_rows, written as a product (its masked assignment traces to a fixed batch size)
        nodule = found[-1] * modality_mask[:, 0:1].to(found[-1].dtype)
        return o.logits, o.gate, o.modality_logits, o.fused, nodule


def export_fast(run: str | Path, batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Export the RUN's model to ``RUN/fast/`` and check it on ``batches`` (real cases' inputs: the first, of at
    least two rows, is what the tracer follows, so no shape of one is fixed in the graph; add batches of one and
    of several to check both): every output within ``TOLERANCE`` of PyTorch's, else nothing is written. Returns
    ``fast.json``'s content."""
    from workbench.runtime.run import load_run

    if not batches or len(batches[0]["modality_mask"]) < 2:
        raise WorkbenchError("workbench fast: needs at least two cases to trace and check the export on")
    model, _ = load_run(run)
    model.eval()
    wrapped = _Exported(model).eval()
    names = [k for k in INPUTS if k in batches[0]]
    if len(names) != len(INPUTS):
        raise WorkbenchError(f"workbench fast: the model reads {sorted(batches[0])}; the fast path needs both "
                             "modalities' inputs (a CT-only or notes-only RUN runs in PyTorch)")
    folder = Path(run) / FAST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    dynamic = {k: {0: "batch"} for k in (*INPUTS, *OUTPUTS)}
    for k in ("note_ids", "note_mask", "note_values"):
        dynamic[k] = {0: "batch", 1: "tokens"}
    with atomic_write(folder / "model.onnx") as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow fixed at export
        torch.onnx.export(wrapped, tuple(batches[0][k] for k in INPUTS), str(tmp), input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_axes=dynamic, opset_version=17, dynamo=False)
        diffs = _compare(wrapped, _session(tmp), batches)
        if max(diffs.values()) > TOLERANCE:
            raise WorkbenchError(f"workbench fast: the export differs from PyTorch by {max(diffs.values()):.2e} "
                                 f"(> {TOLERANCE:g}): {diffs}; not saved")
    info = {"weights_sha256": weights_digest(run), "max_abs_diff": diffs, "checked_cases": sum(
        len(b["modality_mask"]) for b in batches), "tolerance": TOLERANCE, "onnx_opset": 17,
        "onnxruntime": _ort_version()}
    write_text(folder / "fast.json", json.dumps(info, indent=1) + "\n")
    return info


def export_fast_cases(run: str | Path, cases: list[Any]) -> dict[str, Any]:
    """``export_fast`` checked on ``cases`` (at least two, with both modalities): traced on the first four as one
    batch, checked on each alone and on all together."""
    from workbench.runtime.encode import encode_cases
    from workbench.runtime.run import load_run

    model, _ = load_run(run)
    if model.tokenizer is None:
        raise WorkbenchError(f"{run}: the model has no tokenizer")
    data = encode_cases(cases, model.tokenizer, modalities=model.modalities, max_length=model.config.text.max_length,
                        progress=False)

    def rows(idx: list[int]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in data.batch(torch.tensor(idx)).items() if k != "label"}

    n = len(data)
    return export_fast(run, [rows(list(range(min(n, 4))))] + [rows([i]) for i in range(n)] + [rows(list(range(n)))])


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def _session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or max(1, torch.get_num_threads())
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _compare(wrapped: torch.nn.Module, sess: Any, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    worst = dict.fromkeys(OUTPUTS, 0.0)
    for b in batches:
        with torch.no_grad():
            ref = wrapped(*(b[k] for k in INPUTS))
        got = sess.run(list(OUTPUTS), {k: b[k].numpy() for k in INPUTS})
        for name, r, g in zip(OUTPUTS, ref, got, strict=True):
            worst[name] = max(worst[name], float(np.abs(r.numpy() - g).max()) if g.size else 0.0)
    return worst


@dataclass
class FastOutput:
    logits: torch.Tensor
    gate: torch.Tensor
    modality_logits: torch.Tensor
    fused: torch.Tensor
    nodule: torch.Tensor


class FastModel:
    """The RUN's model for scoring through onnxruntime; tokenizer, config and modalities are the PyTorch model's
    (``torch_model``, kept for explanations)."""

    def __init__(self, run: str | Path, torch_model: Any) -> None:
        folder = Path(run) / FAST_DIR
        if not (folder / "model.onnx").is_file():
            raise WorkbenchError(f"{run}: no fast export (run `workbench fast {run} COHORT` first)")
        info = json.loads((folder / "fast.json").read_text(encoding="utf-8"))
        if info.get("weights_sha256") != weights_digest(run):
            raise WorkbenchError(f"{run}: the fast export was made from other weights; run `workbench fast {run} "
                                 "COHORT` again")
        self.torch_model = torch_model
        self.tokenizer, self.config, self.modalities = torch_model.tokenizer, torch_model.config, torch_model.modalities
        self.session = _session(folder / "model.onnx")
        self.info = info

    def eval(self) -> FastModel:
        return self

    def forward_batch(self, batch: dict[str, torch.Tensor], return_attention: bool = False) -> FastOutput:
        if return_attention:
            raise WorkbenchError("the fast path does not return attention; use the PyTorch model")
        feed = {k: batch[k].detach().cpu().numpy() for k in INPUTS}
        out = self.session.run(list(OUTPUTS), feed)
        return FastOutput(*(torch.from_numpy(np.ascontiguousarray(o)) for o in out))


def has_fast(run: str | Path) -> bool:
    return (Path(run) / FAST_DIR / "model.onnx").is_file()


__all__ = ["FAST_DIR", "TOLERANCE", "FastModel", "FastOutput", "export_fast", "export_fast_cases", "has_fast",
           "weights_digest"]
