"""Masked-language-model pretraining of the note encoder on notes alone (no labels).

Why: a few hundred labelled notes per site teach a from-scratch encoder to memorise notes, not to read them;
predicting hidden words first teaches it the notes' language (negation, who had which cancer, how long ago),
and the labelled training that follows starts from there. It is also what lets private training later touch
only the fusion and heads (DESIGN §7: encoders pretrained without labels). BERT's recipe: 15% of real tokens
chosen, 80% of those replaced by [MASK], 10% by a random token, 10% kept; a masked number loses its value too.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from workbench.models.model import NoduleRiskModel
from workbench.train.dataset import EncodedCases


@dataclass
class PretrainConfig:
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    mask_prob: float = 0.15
    seed: int = 0
    progress: bool = True


def mask_tokens(ids: torch.Tensor, mask: torch.Tensor, values: torch.Tensor, mask_id: int, vocab: int, p: float,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, values, targets): targets are -100 except at the chosen positions."""
    chosen = (torch.rand(ids.shape, generator=g) < p) & mask.bool()
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=g)
    ids = torch.where(chosen & (r < 0.8), torch.full_like(ids, mask_id), ids)
    ids = torch.where(chosen & (r >= 0.8) & (r < 0.9), torch.randint(5, vocab, ids.shape, generator=g), ids)
    return ids, values * ~chosen, targets


def pretrain_text_encoder(model: NoduleRiskModel, data: EncodedCases, config: PretrainConfig | None = None) -> list[float]:
    """Pretrain ``model.text_encoder`` in place on the notes of ``data``; returns the loss per epoch."""
    config = config or PretrainConfig()
    if model.text_encoder is None or model.tokenizer is None:
        raise ValueError("the model has no note encoder to pretrain")
    encoder = model.text_encoder
    rows = torch.nonzero(data.tensors["modality_mask"][:, 1]).flatten()
    notes = data.subset(rows.numpy())
    vocab = encoder.encoder.get_input_embeddings().num_embeddings
    head = nn.Sequential(nn.Linear(encoder.encoder.config.hidden_size, encoder.encoder.config.hidden_size), nn.GELU(),
                         nn.LayerNorm(encoder.encoder.config.hidden_size),
                         nn.Linear(encoder.encoder.config.hidden_size, vocab))
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(config.seed)
    mask_id = int(model.tokenizer.mask_token_id)
    encoder.train()
    losses = []
    bar = tqdm(range(config.epochs), desc="pretrain notes (MLM)", unit="epoch", disable=not config.progress)
    for _ in bar:
        total, n, t0 = 0.0, 0, time.perf_counter()
        for batch in notes.batches(config.batch_size, shuffle=True, generator=g):
            ids, values, targets = mask_tokens(batch["note_ids"], batch["note_mask"], batch["note_values"], mask_id,
                                               vocab, config.mask_prob, g)
            hidden = encoder.hidden_states(ids, batch["note_mask"], values)  # (B, L, H)
            loss = F.cross_entropy(head(hidden).flatten(0, 1), targets.flatten(), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(ids)
            n += len(ids)
        losses.append(total / max(n, 1))
        bar.set_postfix(loss=round(losses[-1], 3), s=round(time.perf_counter() - t0, 1))
    encoder.eval()
    return losses


# --- the note reader: supervised pretraining on stated facts (a stand-in for an upstream clinical IE model) ---

NUMERIC_PROJ = "numeric_proj.safetensors"


@dataclass
class ReaderConfig:
    n_notes: int = 8000  # corpus size (workbench.cohort.note_corpus, a seed no cohort uses)
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    progress: bool = True


def pretrain_note_reader(model: NoduleRiskModel, texts: list[str], facts: dict[str, Any],
                         classes: dict[str, tuple[str, ...]], config: ReaderConfig | None = None) -> dict[str, float]:
    """Teach ``model.text_encoder`` to state the facts of a note (mean-pooled token states -> one head per fact).

    Mean pooling keeps each fact readable from the token states themselves, which is what the fusion's note
    summary token reads. Returns the last epoch's loss per fact.
    """
    import numpy as np

    from workbench.models.tokenizer import numeric_values
    from workbench.train.dataset import encode_note

    config = config or ReaderConfig()
    if model.text_encoder is None or model.tokenizer is None:
        raise ValueError("the model has no note encoder to pretrain")
    enc, tok = model.text_encoder, model.tokenizer
    max_len = model.config.text.max_length
    rows = [encode_note(t, tok, max_len)[0] for t in tqdm(texts, desc="tokenize corpus", disable=not config.progress,
                                                            leave=False)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    mask = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    values = numeric_values(tok, ids) * mask
    hidden = enc.encoder.config.hidden_size
    heads = nn.ModuleDict({k: nn.Linear(hidden, len(classes[k]) if k in classes else 1) for k in facts})
    targets = {k: torch.as_tensor(np.asarray(v)) for k, v in facts.items()}
    params = [p for p in enc.parameters() if p.requires_grad] + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(config.seed)
    enc.train()
    last: dict[str, float] = {}
    for _ in tqdm(range(config.epochs), desc="pretrain note reader", unit="epoch", disable=not config.progress):
        sums = {k: 0.0 for k in facts}
        order = torch.randperm(len(rows), generator=g)
        for s in range(0, len(rows), config.batch_size):
            b = order[s:s + config.batch_size]
            m = mask[b]
            width_b = int(m.sum(1).max())
            h = enc.hidden_states(ids[b, :width_b], m[:, :width_b], values[b, :width_b])  # (B, L, H)
            pooled = (h * m[:, :width_b, None]).sum(1) / m[:, :width_b].sum(1, keepdim=True).clamp_min(1)  # (B, H)
            loss = torch.zeros(())
            for k, head in heads.items():
                out, y = head(pooled), targets[k][b]
                if k in classes:
                    term = F.cross_entropy(out, y.long())
                elif k == "age":
                    term = F.mse_loss(out.squeeze(-1), (y - 65.0) / 10.0)
                else:
                    term = F.binary_cross_entropy_with_logits(out.squeeze(-1), y)
                sums[k] += term.item() * len(b)
                loss = loss + term
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        last = {k: v / len(rows) for k, v in sums.items()}
    enc.eval()
    return last


def save_note_reader(model: NoduleRiskModel, out_dir: str | Path, card: str) -> Path:
    """A local pretrained-encoder directory: ``save_pretrained`` weights, tokenizer, numeric projection, card."""
    from safetensors.torch import save_file

    assert model.text_encoder is not None and model.tokenizer is not None
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.text_encoder.encoder.save_pretrained(str(tmp))
    model.tokenizer.save_pretrained(str(tmp))
    vp = model.text_encoder.value_proj
    save_file({"weight": vp.weight.detach().contiguous(), "bias": vp.bias.detach().contiguous()}, str(tmp / NUMERIC_PROJ))
    (tmp / "README.md").write_text(card, encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def reader_card(config: ReaderConfig, corpus_seed: int, losses: dict[str, float]) -> str:
    return (
        "# Note reader (pretrained note encoder)\n\n"
        "A small BERT-style encoder taught to state the facts of a clinical note (age, sex, family history, smoking, "
        "prior cancer, prior chest CT, emphysema) from mean-pooled token states. Trained on "
        f"{config.n_notes} synthetic notes from the workbench's note generator with seed {corpus_seed}, which no "
        "cohort uses; never on a cohort's notes and never on malignancy labels. It stands in for an upstream "
        "clinical information-extraction model. Load it with `TextEncoderConfig(path=THIS_DIR, freeze=True)`.\n\n"
        f"Last-epoch losses: {', '.join(f'{k} {v:.3f}' for k, v in losses.items())}.\n"
    )
