"""The note reader: a note encoder pretrained to state the facts a note gives, on a separate synthetic corpus.

Why: a few hundred labelled notes per site teach a from-scratch encoder to memorise notes, not to read them (full
preset: notes-only AUROC 0.53-0.55; masked-language-model pretraining on the train notes did not change that; a
bag-of-words model reached 0.60; ceiling 0.70; one seed on the earlier protocol's test split, which guided this
choice then and is not evidence: the figures of record are the JSONs in bench/results/ made under the protocol).
Hospitals use an upstream clinical information-extraction model trained elsewhere; the note corpus
``workbench.cohort.note_corpus`` writes stands in for that elsewhere (no malignancy label, no cohort note), read
here as data (``workbench.data.corpus``). The reader is then loaded like any local pretrained encoder and kept
frozen; it is also what lets private training later touch only the fusion and heads (docs/architecture.md §7).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from workbench.atomic import atomic_write
from workbench.data.corpus import NoteCorpus, load_note_corpus
from workbench.models.model import NoduleRiskModel

NUMERIC_PROJ = "numeric_proj.safetensors"


@dataclass
class ReaderConfig:
    n_notes: int = 8000  # corpus size (the note corpus, a seed no cohort uses)
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    progress: bool = True


def standard_age(age: torch.Tensor) -> torch.Tensor:
    """The age regression target: years centred on 65 in decades (about unit spread)."""
    return (age - 65.0) / 10.0


def tokenized_notes(texts: list[str], tokenizer: Any, max_length: int,
                    progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Notes as the encoder reads them (de-identified, numbers as digits): padded ids (N, L), the padding mask and
    each number token's value, L the longest note's length."""
    from workbench.models.tokenizer import numeric_values
    from workbench.runtime.encode import encode_note

    rows = [encode_note(t, tokenizer, max_length)[0]
            for t in tqdm(texts, desc="tokenize corpus", disable=not progress, leave=False)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    mask = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    return ids, mask, numeric_values(tokenizer, ids) * mask


def pretrain_note_reader(model: NoduleRiskModel, corpus: NoteCorpus, config: ReaderConfig | None = None
                         ) -> dict[str, float]:
    """Teach ``model.text_encoder`` to state the facts of ``corpus``' notes (mean-pooled token states -> one head
    per fact).

    Mean pooling keeps each fact readable from the token states themselves, which is what the fusion's note
    summary token reads. Returns the last epoch's loss per fact.
    """
    import numpy as np

    texts, facts, classes = corpus.texts, corpus.facts, corpus.classes
    config = config or ReaderConfig()
    if model.text_encoder is None or model.tokenizer is None:
        raise ValueError("the model has no note encoder to pretrain")
    enc = model.text_encoder
    ids, mask, values = tokenized_notes(texts, model.tokenizer, model.config.text.max_length, config.progress)
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
        order = torch.randperm(len(ids), generator=g)
        for s in range(0, len(ids), config.batch_size):
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
                    term = F.mse_loss(out.squeeze(-1), standard_age(y))
                else:
                    term = F.binary_cross_entropy_with_logits(out.squeeze(-1), y)
                sums[k] += term.item() * len(b)
                loss = loss + term
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        last = {k: v / len(ids) for k, v in sums.items()}
    enc.eval()
    return last


def save_note_reader(model: NoduleRiskModel, out_dir: str | Path, card: str) -> Path:
    """A local pretrained-encoder directory: ``save_pretrained`` weights, tokenizer, numeric projection, card."""
    from safetensors.torch import save_file

    assert model.text_encoder is not None and model.tokenizer is not None
    with atomic_write(out_dir) as tmp:
        model.text_encoder.encoder.save_pretrained(str(tmp))
        model.tokenizer.save_pretrained(str(tmp))
        vp = model.text_encoder.value_proj
        save_file({"weight": vp.weight.detach().contiguous(), "bias": vp.bias.detach().contiguous()},
                  str(tmp / NUMERIC_PROJ))
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return Path(out_dir)


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


def fresh_note_model(config: ReaderConfig) -> NoduleRiskModel:
    """A notes-only model to pretrain, its weights drawn from ``config.seed``: the same corpus and config give
    the same reader in every run (before, the draw came from torch's global state and the reader, the fusion over
    it and the demo's figures moved from run to run)."""
    import torch

    from workbench.models.model import ModelConfig, build_model

    torch.manual_seed(config.seed)
    return build_model(ModelConfig(modalities=("notes",)))


def build_note_reader(model: NoduleRiskModel, out_dir: str | Path, corpus: str | Path | Callable[[], Path],
                      config: ReaderConfig | None = None) -> tuple[Path, dict[str, float]]:
    """A note corpus file (``workbench.cohort.note_corpus.write_note_corpus``, or a function that writes it and
    returns its path) -> ``model``'s note encoder pretrained on it, saved as a reader folder with its card; the
    folder and the last epoch's losses."""
    config = config or ReaderConfig()
    data = load_note_corpus(corpus() if callable(corpus) else corpus)
    losses = pretrain_note_reader(model, data, config)
    return save_note_reader(model, out_dir, reader_card(config, data.seed, losses)), losses


__all__ = ["ReaderConfig", "build_note_reader", "fresh_note_model", "pretrain_note_reader", "reader_card", "save_note_reader",
           "standard_age", "tokenized_notes"]
