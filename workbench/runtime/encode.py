"""Cases -> the keyed tensors the model reads (the data boundary), and batches of them.

Batch keys, defined once: ``ct_patch`` (N, 1, P, P, P), ``ct_context`` (N, 2, C, C, C), ``ct_position`` (N, 3),
``note_ids`` / ``note_mask`` / ``note_values`` (N, L), ``modality_mask`` (N, 2) bool in ``MODALITIES`` order,
``label`` (N,) float (-1 when unknown). A case whose CT is refused keeps its note (and the reverse): the mask
says what is there, the arrays hold zeros. A case with neither is listed in ``refused`` and left out.
Notes are de-identified before tokenizing: the model never reads an identifier.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import PreTrainedTokenizerFast

from workbench.atomic import atomic_write
from workbench.data.cache import PreprocessCache
from workbench.data.case import Case
from workbench.data.deid import deidentify
from workbench.data.ingest import check_note, lone_surrogate_reason
from workbench.data.preprocess import CTInputs, preprocess_ct
from workbench.data.transforms import PreprocessConfig
from workbench.errors import CaseError, WorkbenchError
from workbench.models.tokenizer import normalize_note, numeric_values

KEYS = ("ct_patch", "ct_context", "ct_position", "note_ids", "note_mask", "note_values", "modality_mask", "label")


@dataclass
class EncodedCases:
    """The tensors of a list of cases, row i = ``case_ids[i]``."""

    case_ids: list[str]
    sites: list[str]
    tensors: dict[str, torch.Tensor]
    refused: list[tuple[str, str]] = field(default_factory=list)  # (case_id, reason)

    def __len__(self) -> int:
        return len(self.case_ids)

    def subset(self, idx: Sequence[int] | np.ndarray) -> EncodedCases:
        i = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return EncodedCases([self.case_ids[j] for j in i.tolist()], [self.sites[j] for j in i.tolist()],
                            {k: v[i] for k, v in self.tensors.items()}, list(self.refused))

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for s in range(0, n, batch_size):
            yield self.batch(order[s:s + batch_size])

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {k: v[idx] for k, v in self.tensors.items()}
        width = int(out["note_mask"].sum(1).max().item()) if len(idx) else 1  # trim padding no row uses
        for k in ("note_ids", "note_mask", "note_values", "note_states"):
            if k in out:
                out[k] = out[k][:, :max(width, 1)]
        for k in ("ct_patch", "ct_context"):  # absent when only a frozen reader's states are kept
            if k in out:
                out[k] = out[k].float()
        return out

    def save(self, path: str | Path) -> None:
        """Atomic write (torch format): encoding a full cohort reads gigabytes of DICOM; do it once."""
        with atomic_write(path) as tmp:
            torch.save({"case_ids": self.case_ids, "sites": self.sites, "tensors": self.tensors, "refused": self.refused},
                       tmp)

    @classmethod
    def load(cls, path: str | Path) -> EncodedCases:
        d = torch.load(path, weights_only=False)
        return cls(d["case_ids"], d["sites"], d["tensors"], d["refused"])

    @property
    def labels(self) -> np.ndarray:
        return self.tensors["label"].cpu().numpy()


def encode_note(text: str, tokenizer: PreTrainedTokenizerFast, max_length: int) -> tuple[list[int], str]:
    """De-identify, spell numbers as digits, tokenize; returns (ids, the text the model read).

    A note with a lone surrogate is refused here too (``check_note`` refuses it first in ``encode_cases``):
    the tokenizer would fail on it with a TypeError that names nothing."""
    reason = lone_surrogate_reason(text)
    if reason is not None:
        raise CaseError(reason)
    clean = normalize_note(deidentify(text))
    ids = tokenizer(clean, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
    return ids, clean


def encode_cases(
    cases: Sequence[Case],
    tokenizer: PreTrainedTokenizerFast,
    *,
    max_length: int = 320,
    preprocess: PreprocessConfig | None = None,
    cache: PreprocessCache | None = None,
    modalities: Sequence[str] = ("ct", "notes"),
    progress: bool = True,
    desc: str = "encode",
    workers: int = 1,
) -> EncodedCases:
    """Preprocess CT (through the cache) and tokenize notes of ``cases``; refusals are listed, not raised.

    ``workers`` > 1 reads the CTs in that many spawned processes (reading and resampling a series is nearly all
    of the time); the result is the same, row for row."""
    config = preprocess or PreprocessConfig()
    p, c = config.patch_size, config.context_size
    rows: list[dict[str, np.ndarray]] = []
    ids_out, sites, refused = [], [], []
    with_ct = [case for case in cases if "ct" in modalities and case.has_ct]
    ct_inputs = _read_cts(with_ct, config, cache, workers, progress, desc) if workers > 1 and len(with_ct) > 1 else {}
    for case in tqdm(cases, desc=desc, unit="case", disable=not progress or bool(ct_inputs), leave=False):
        row: dict[str, np.ndarray] = {}
        reasons = []
        has_ct = has_note = False
        if "ct" in modalities and case.has_ct:
            try:
                got = ct_inputs.get(case.case_id) or preprocess_ct(case, config, cache)
                if isinstance(got, WorkbenchError):
                    raise got
                inputs = got
                row.update(ct_patch=inputs.ct_patch, ct_context=inputs.ct_context, ct_position=inputs.ct_position)
                has_ct = True
            except WorkbenchError as exc:
                reasons.append(f"ct: {exc}")
        if "notes" in modalities and case.has_note:
            reason = check_note(case)
            if reason:
                reasons.append(f"note: {reason}")
            else:
                row["note_ids"] = np.asarray(encode_note(case.note or "", tokenizer, max_length)[0], dtype=np.int64)
                has_note = True
        if not (has_ct or has_note):
            refused.append((case.case_id, "; ".join(reasons) or "no usable modality"))
            continue
        row["modality_mask"] = np.array([has_ct, has_note])
        row["label"] = np.array(-1.0 if case.label is None else float(case.label), dtype=np.float32)
        rows.append(row)
        ids_out.append(case.case_id)
        sites.append(case.site)
    n = len(rows)
    width = max([len(r["note_ids"]) for r in rows if "note_ids" in r] or [1])
    t = {
        "ct_patch": torch.zeros(n, 1, p, p, p, dtype=torch.float16),  # half in memory: [0, 1] windowed HU
        "ct_context": torch.zeros(n, 2, c, c, c, dtype=torch.float16),
        "ct_position": torch.full((n, 3), 0.5),
        "note_ids": torch.zeros(n, width, dtype=torch.long),
        "note_mask": torch.zeros(n, width, dtype=torch.long),
        "modality_mask": torch.zeros(n, 2, dtype=torch.bool),
        "label": torch.zeros(n),
    }
    for i, r in enumerate(rows):
        if "ct_patch" in r:
            t["ct_patch"][i] = torch.from_numpy(r["ct_patch"])
            t["ct_context"][i] = torch.from_numpy(r["ct_context"])
            t["ct_position"][i] = torch.from_numpy(r["ct_position"])
        if "note_ids" in r:
            k = len(r["note_ids"])
            t["note_ids"][i, :k] = torch.from_numpy(r["note_ids"])
            t["note_mask"][i, :k] = 1
        t["modality_mask"][i] = torch.from_numpy(r["modality_mask"])
        t["label"][i] = float(r["label"])
    t["note_values"] = numeric_values(tokenizer, t["note_ids"]) * t["note_mask"]
    return EncodedCases(ids_out, sites, t, refused)


def _read_ct(job: tuple[Case, PreprocessConfig, PreprocessCache | None]) -> CTInputs | WorkbenchError:
    """One case's CT in a worker process; a refusal comes back as the error, to be listed, not raised."""
    case, config, cache = job
    try:
        return preprocess_ct(case, config, cache)
    except WorkbenchError as exc:
        return exc


def _one_thread() -> None:
    torch.set_num_threads(1)  # the processes are the parallelism; threads inside them would only compete


def _read_cts(cases: Sequence[Case], config: PreprocessConfig, cache: PreprocessCache | None, workers: int,
              progress: bool, desc: str) -> dict[str, CTInputs | WorkbenchError]:
    """Every case's CT read in ``workers`` spawned processes (not forked: a process that already ran torch can
    deadlock its forked children), in order, with one progress bar."""
    jobs = [(case, config, cache) for case in cases]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_one_thread) as pool:
        results = list(tqdm(pool.map(_read_ct, jobs, chunksize=4), total=len(jobs), desc=desc, unit="case",
                            disable=not progress, leave=False))
    return {case.case_id: r for case, r in zip(cases, results, strict=True)}


def note_reader_frozen(model: torch.nn.Module) -> bool:
    """True when the model reads notes with a frozen encoder (its projection to the fusion width may train)."""
    enc = getattr(model, "text_encoder", None)
    return enc is not None and not any(p.requires_grad for p in [*enc.encoder.parameters(),
                                                                  *enc.value_proj.parameters()])


@torch.no_grad()
def with_note_states(model: torch.nn.Module, data: EncodedCases, batch_size: int = 64) -> EncodedCases:
    """The same cases plus ``note_states`` (N, L, H): the frozen note encoder's hidden states, computed once.

    A frozen encoder gives every note the same states in every epoch, so training needs them once; the model
    then skips the encoder (``forward(note_states=...)``). It is where fused training spends most of its time on
    a CPU. Only for a frozen encoder: a trainable one must see the tokens every step.
    """
    enc = getattr(model, "text_encoder", None)
    if enc is None or "note_states" in data.tensors or len(data) == 0:
        return data
    if not note_reader_frozen(model):
        raise WorkbenchError("note states are only cached for a frozen note encoder")
    was_training = enc.training
    enc.eval()
    t = data.tensors
    device = next(enc.parameters()).device
    parts = []
    for s in range(0, len(data), batch_size):
        sl = slice(s, s + batch_size)
        parts.append(enc.hidden_states(t["note_ids"][sl].to(device), t["note_mask"][sl].to(device),
                                       t["note_values"][sl].to(device)).float().cpu())
    enc.train(was_training)
    return EncodedCases(data.case_ids, data.sites, {**t, "note_states": torch.cat(parts)}, list(data.refused))


def ct_reader_frozen(model: torch.nn.Module) -> bool:
    """True when the model reads CT with frozen convolution stacks (its projections may train)."""
    enc = getattr(model, "ct_encoder", None)
    return enc is not None and not any(p.requires_grad for p in enc.frozen_parameters())


@torch.no_grad()
def with_ct_states(model: torch.nn.Module, data: EncodedCases, batch_size: int = 64) -> EncodedCases:
    """The same cases plus ``ct_patch_states`` (N, 64, C) and ``ct_context_states`` (N, 8, C'): the frozen CT
    reader's convolution cells, computed once (as ``with_note_states`` does for the note reader). Training then
    runs only the projections and the fusion; flip augmentation has nothing left to flip and is skipped."""
    enc = getattr(model, "ct_encoder", None)
    if enc is None or "ct_patch_states" in data.tensors or len(data) == 0:
        return data
    if not ct_reader_frozen(model):
        raise WorkbenchError("CT states are only cached for a frozen CT reader")
    t = data.tensors
    device = next(enc.parameters()).device
    patches, contexts = [], []
    for s in range(0, len(data), batch_size):
        sl = slice(s, s + batch_size)
        p, c = enc.features(t["ct_patch"][sl].float().to(device), t["ct_context"][sl].float().to(device))
        patches.append(p.float().cpu())
        contexts.append(c.float().cpu())
    extra = {"ct_patch_states": torch.cat(patches), "ct_context_states": torch.cat(contexts)}
    return EncodedCases(data.case_ids, data.sites, {**t, **extra}, list(data.refused))


def drop_modality(data: EncodedCases, modality: str) -> EncodedCases:
    """The same cases with one modality removed (mask off, inputs zeroed): the missing-modality ablation."""
    t = {k: v.clone() for k, v in data.tensors.items()}
    if modality == "ct":
        t["modality_mask"][:, 0] = False
        for k in ("ct_patch", "ct_context", "ct_patch_states", "ct_context_states"):
            if k in t:
                t[k].zero_()
    elif modality == "notes":
        t["modality_mask"][:, 1] = False
        t["note_mask"].zero_()
        t["note_ids"].zero_()
        t["note_values"].zero_()
        if "note_states" in t:
            t["note_states"].zero_()
    else:
        raise WorkbenchError(f"modality {modality!r}: expected 'ct' or 'notes'")
    keep = t["modality_mask"].any(1)
    sub = EncodedCases(data.case_ids, data.sites, t, list(data.refused))
    return sub.subset(np.flatnonzero(keep.numpy()))
