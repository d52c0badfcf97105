"""One case's explanation: where in the CT patch, which words of the note, and how much each modality counted.

Captum does the attribution; this module fixes what it is computed against and how it is read:
- CT: Integrated Gradients of the fused log-odds with respect to the nodule patch, against a named baseline
  (``zeros``: the window's lower end, air), ``steps`` points on the path; Integrated Gradients' completeness
  (attributions sum to f(x) - f(baseline)) is reported as ``ct_completeness_gap``, a check that the path was
  fine enough.
- Note: Integrated Gradients on the note encoder's token embeddings (the embedding layer's output: Layer
  Integrated Gradients, computed as plain IG on the embeddings so no hook is needed) against the embeddings of
  [PAD] tokens, summed over the embedding width, then merged from word pieces (``##`` continuations) to words.
- Fusion: the gate weights, and attention rollout (Abnar & Zuidema 2020: per layer, heads averaged, identity
  added, rows normalised, layers multiplied) read from the summary tokens: the share of each modality's tokens
  in what the fused representation drew on.
A missing modality is not attributed; the explanation says so in ``notes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from workbench.models.fusion import FusionOutput
from workbench.models.model import NoduleRiskModel


@dataclass
class Explanation:
    case_id: str
    logit: float  # fused log-odds, before calibration
    gate: dict[str, float]  # modality -> weight (0 where absent)
    present: dict[str, bool]
    rollout: dict[str, float]  # modality -> share of the summaries' attention rollout
    ct_attribution: np.ndarray | None = None  # (P, P, P) voxel attributions of the nodule patch
    ct_baseline: str = "zeros"
    ct_completeness_gap: float | None = None  # |sum(attr) - (f(x) - f(baseline))|
    words: list[str] = field(default_factory=list)
    word_attribution: np.ndarray | None = None  # (n_words,)
    notes: list[str] = field(default_factory=list)  # what was not explained, and why

    def top_words(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` words of the note with the largest attribution either way, strongest first."""
        if self.word_attribution is None or not len(self.words):
            return []
        order = np.argsort(-np.abs(self.word_attribution))[:n]
        return [(self.words[i], float(self.word_attribution[i])) for i in order]

    def summary(self) -> dict[str, Any]:
        """The JSON-able part (arrays as their shapes and top words)."""
        top = [[w, v] for w, v in self.top_words()]
        return {"case_id": self.case_id, "logit": self.logit, "gate": self.gate, "present": self.present,
                "rollout": self.rollout, "ct_baseline": self.ct_baseline,
                "ct_completeness_gap": self.ct_completeness_gap,
                "ct_shape": None if self.ct_attribution is None else list(self.ct_attribution.shape),
                "top_words": top, "notes": self.notes}


def integrated_gradients(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, baseline: torch.Tensor,
                         steps: int = 32) -> tuple[torch.Tensor, float]:
    """Captum's Integrated Gradients of ``forward`` (one output per row) at ``x``; returns (attributions, the
    completeness gap |sum(attr) - (f(x) - f(baseline))|)."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(forward)
    attr, delta = ig.attribute(x, baselines=baseline, n_steps=steps, method="gausslegendre",
                               return_convergence_delta=True)
    return attr.detach(), float(delta.abs().max())


def merge_word_pieces(tokens: list[str], scores: np.ndarray) -> tuple[list[str], np.ndarray]:
    """WordPiece tokens -> words: a ``##`` piece joins the word before it and adds its score."""
    words: list[str] = []
    merged: list[float] = []
    for t, s in zip(tokens, scores, strict=True):
        if t.startswith("##") and words:
            words[-1] += t[2:]
            merged[-1] += float(s)
        else:
            words.append(t)
            merged.append(float(s))
    return words, np.asarray(merged)


def attention_rollout(attentions: list[torch.Tensor], token_modality: torch.Tensor, starts: list[int],
                      modalities: tuple[str, ...]) -> dict[str, float]:
    """Share of each modality's tokens in the rolled-out attention of the summary tokens (one case)."""
    n = attentions[0].shape[-1]
    roll = torch.eye(n)
    for a in attentions:
        a = a[0].mean(0).float().cpu()  # (L, L), heads averaged
        a = a + torch.eye(n)
        roll = (a / a.sum(-1, keepdim=True)) @ roll
    rows = roll[starts].sum(0)  # (L,) what the summaries drew on
    total = float(rows.sum()) or 1.0
    return {m: float(rows[token_modality.cpu() == i].sum()) / total for i, m in enumerate(modalities)}


def explain(model: NoduleRiskModel, batch: Any, case_id: str = "", *, steps: int = 32,
            ct_baseline: str = "zeros", forward: Forward | None = None) -> Explanation:
    """Explain one case with the model in eval mode: a ``workbench.data.Case`` (read, de-identified and
    preprocessed as ``workbench.predict`` does; a refused case raises ``CaseError`` with its reason) or a keyed
    batch of one row, as ``EncodedCases.batch`` gives.

    ``forward``: what evaluates the model (default ``model.forward_batch``; ``fast.FastExplainer`` passes a
    compiled one)."""
    from workbench.models.fusion import MODALITIES

    if not isinstance(batch, dict):  # a Case
        from workbench.runtime.predict import predict

        pred = predict(model, batch)
        exp = explain(model, pred.inputs, case_id or pred.case_id, steps=steps, ct_baseline=ct_baseline, forward=forward)
        exp.notes = [*pred.notes, *exp.notes]
        return exp
    if ct_baseline != "zeros":
        raise ValueError(f"CT baseline {ct_baseline!r}: only 'zeros' (air at the window's lower end) is defined")
    model.eval()
    b = {k: v for k, v in batch.items() if k != "label"}
    mask = b["modality_mask"]
    present = {m: bool(mask[0, MODALITIES.index(m)]) for m in model.modalities}
    if "notes" in present and present["notes"] and int(b["note_mask"].sum()) == 0:
        present["notes"] = False
    fwd = forward or model.forward_batch
    with torch.no_grad():
        out = fwd(b, return_attention=True)
    gate = {m: float(out.gate[0, i]) for i, m in enumerate(model.modalities)}
    starts, pos = [], 0  # each modality's summary token leads its block of tokens
    for i in range(len(model.modalities)):
        starts.append(pos)
        pos += int((out.token_modality == i).sum())
    rollout = attention_rollout(out.attentions or [], out.token_modality, starts, model.modalities)
    # an absent modality's placeholder tokens carry nothing: its share is 0 and the rest is renormalised
    kept = sum(v for m, v in rollout.items() if present[m]) or 1.0
    rollout = {m: (v / kept if present[m] else 0.0) for m, v in rollout.items()}
    exp = Explanation(case_id, float(out.logits[0]), gate, present, rollout, ct_baseline=ct_baseline)

    if present.get("ct"):
        patch = b["ct_patch"].float()
        f_ct = ct_scorer(model, b, fwd)
        attr, gap = integrated_gradients(f_ct, patch, torch.zeros_like(patch), steps)
        exp.ct_attribution = attr[0, 0].cpu().numpy()
        exp.ct_completeness_gap = gap
    elif "ct" in present:
        exp.notes.append("no CT for this case: the CT is not attributed and its gate is 0")
    if present.get("notes"):
        exp.words, exp.word_attribution = _note_words(model, b, steps, fwd)
    elif "notes" in present:
        exp.notes.append("no note for this case: no word is attributed and the note gate is 0")
    return exp


def occlusion_ct(model: NoduleRiskModel, batch: dict[str, torch.Tensor], window: int = 4) -> np.ndarray:
    """Captum Occlusion on the CT patch (the cross-check of Integrated Gradients, outside the explanation's time
    budget): each ``window``^3 block in turn set to air (the same baseline), the drop in log-odds spread over
    the block. (P, P, P), same orientation as ``Explanation.ct_attribution``."""
    from captum.attr import Occlusion

    model.eval()
    b = {k: v for k, v in batch.items() if k != "label"}
    f = ct_scorer(model, b)
    patch = b["ct_patch"].float()
    with torch.no_grad():
        attr = Occlusion(f).attribute(patch, sliding_window_shapes=(1, window, window, window),
                                      strides=(1, window, window, window), baselines=0.0, perturbations_per_eval=64)
    return attr[0, 0].cpu().numpy()


def _repeat(batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """A batch of one case as ``n`` identical rows (views): Captum evaluates the path points as one batch."""
    return {k: v.expand(n, *v.shape[1:]) for k, v in batch.items()}


@torch.no_grad()
def _frozen_note_states(model: NoduleRiskModel, b: dict[str, torch.Tensor], present: dict[str, bool]) -> dict[str, torch.Tensor]:
    """``note_states`` of a frozen note reader (the same for every path point of the CT attribution)."""
    from workbench.runtime.encode import note_reader_frozen

    if "note_states" in b or not present.get("notes") or not note_reader_frozen(model):
        return {}
    assert model.text_encoder is not None
    return {"note_states": model.text_encoder.hidden_states(b["note_ids"], b["note_mask"], b["note_values"])}


@torch.no_grad()
def _frozen_ct_states(model: NoduleRiskModel, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A frozen CT reader's convolution cells (the same for every path point of the note attribution)."""
    from workbench.runtime.encode import ct_reader_frozen

    if "ct_patch_states" in b or "ct_patch" not in b or not ct_reader_frozen(model):
        return {}
    assert model.ct_encoder is not None
    p, c = model.ct_encoder.features(b["ct_patch"].float(), b["ct_context"].float())
    return {"ct_patch_states": p, "ct_context_states": c}


Forward = Callable[..., FusionOutput]
"""``forward(batch, return_attention=False) -> FusionOutput``: ``model.forward_batch`` or a compiled stand-in."""


def ct_scorer(model: NoduleRiskModel, batch: dict[str, torch.Tensor],
              forward: Forward | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(patches (N, 1, P, P, P)) -> log-odds (N,): the case's other inputs fixed (a frozen note reader's states
    computed once, not once per path point); what CT attributions and the CT deletion curve evaluate."""
    fwd = forward or model.forward_batch
    b = {k: v for k, v in batch.items() if k != "label"}
    present = {"notes": bool(b["modality_mask"][0, 1]) and "note_mask" in b and int(b["note_mask"].sum()) > 0}
    # the patch must flow through the CT encoder: any precomputed CT states are left out
    rest = {k: v for k, v in b.items() if k not in ("ct_patch", "ct_patch_states", "ct_context_states")}
    rest.update(_frozen_note_states(model, b, present))

    def f(x: torch.Tensor) -> torch.Tensor:
        return fwd({**_repeat(rest, x.shape[0]), "ct_patch": x}).logits

    return f


def _note_rest(model: NoduleRiskModel, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    rest = {k: v for k, v in b.items() if k not in ("note_ids", "note_values", "note_states", "note_embeds")}
    rest.update(_frozen_ct_states(model, b))
    return rest


def note_scorer(model: NoduleRiskModel, batch: dict[str, torch.Tensor],
                forward: Forward | None = None) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """(f, ids): f(note ids (N, W)) -> log-odds (N,), the CT fixed (a frozen CT reader's cells computed once);
    number values follow the ids, so a token replaced by [PAD] loses its value too. ``ids``: the case's (1, W)."""
    fwd = forward or model.forward_batch
    b = {k: v for k, v in batch.items() if k != "label"}
    rest = _note_rest(model, b)
    table = getattr(model, "number_table", None)

    def f(note_ids: torch.Tensor) -> torch.Tensor:
        n = note_ids.shape[0]
        v = b["note_values"].expand(n, -1) if table is None else table[note_ids.clamp(0, len(table) - 1)] * b["note_mask"]
        return fwd({**_repeat(rest, n), "note_ids": note_ids, "note_values": v}).logits

    return f, b["note_ids"]


def note_embedding_scorer(model: NoduleRiskModel, batch: dict[str, torch.Tensor], forward: Forward | None = None,
                          ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor]:
    """(f, embeds, baseline): f(word embeddings (N, W, H)) -> log-odds (N,), ids and number values the case's own;
    ``embeds`` the case's word embeddings (1, W, H), ``baseline`` those of [PAD] (id 0) at every position.
    Integrated Gradients of f between them is Layer Integrated Gradients on the embedding layer, without a hook."""
    assert model.text_encoder is not None
    fwd = forward or model.forward_batch
    b = {k: v for k, v in batch.items() if k != "label"}
    rest = {**_note_rest(model, b), "note_ids": b["note_ids"], "note_values": b["note_values"]}
    table = model.text_encoder.encoder.get_input_embeddings()
    with torch.no_grad():
        embeds, baseline = table(b["note_ids"]), table(torch.zeros_like(b["note_ids"]))

    def f(e: torch.Tensor) -> torch.Tensor:
        return fwd({**_repeat(rest, e.shape[0]), "note_embeds": e}).logits

    return f, embeds, baseline


def _note_words(model: NoduleRiskModel, b: dict[str, torch.Tensor], steps: int,
                forward: Forward | None = None) -> tuple[list[str], np.ndarray]:
    from captum.attr import IntegratedGradients

    assert model.tokenizer is not None
    f, embeds, baseline = note_embedding_scorer(model, b, forward)
    attr = IntegratedGradients(f).attribute(embeds, baselines=baseline, n_steps=steps, method="gausslegendre")
    width = int(b["note_mask"][0].sum())  # tokens are left-aligned; padding (a fixed-width batch) is dropped
    scores = attr.sum(-1)[0, :width].detach().float().cpu().numpy()
    tokens = model.tokenizer.convert_ids_to_tokens(b["note_ids"][0, :width].tolist())
    return merge_word_pieces(tokens, scores)


__all__ = ["Explanation", "Forward", "attention_rollout", "ct_scorer", "explain", "integrated_gradients",
           "merge_word_pieces", "note_embedding_scorer", "note_scorer", "occlusion_ct"]
