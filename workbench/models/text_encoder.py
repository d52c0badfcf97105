"""Note encoder: a ``transformers`` AutoModel, from a local directory or a small BERT built here.

Two ways in, one path: ``TextEncoderConfig(path=...)`` loads any encoder saved with ``save_pretrained`` (a clinical
BERT the hospital has on disk, or one this project pretrained) with ``local_files_only``; without a path a small
BERT-style config is built from the fields below and trained from scratch. Nothing is downloaded.

The encoder is fed ``inputs_embeds`` that we compute: the model's own word embedding plus a learned projection
of each whole-number token's value (``tokenizer.numeric_values``), so "78" sits next to "77" from the start.
Position and token-type ids are passed per sample, shaped (B, L): a stock BertModel's shared (1, L) buffers break
Opacus' per-sample gradients (docs/architecture.md §6).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, BertConfig, BertModel


@dataclass
class TextEncoderConfig:
    path: str | None = None  # a local save_pretrained directory, read by build_model only (not saved); None: small config below
    vocab_size: int = 2300  # set from the tokenizer by build_model
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_length: int = 320  # tokens kept per note (generated notes: 130-305)
    dropout: float = 0.1  # hidden-state dropout; attention-probability dropout stays 0 (its masks cost more than the layers on CPU)
    freeze: bool = False  # keep the encoder's weights fixed (a pretrained encoder under DP, say)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers prints a load report and progress bars; a node's log wants one line per event."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


class TextEncoder(nn.Module):
    """(note_ids, note_mask, note_values) -> note tokens (B, L, d_model).

    Example:
        >>> enc = TextEncoder(TextEncoderConfig(vocab_size=100), d_model=64)
        >>> ids = torch.randint(5, 100, (2, 12))
        >>> enc(ids, torch.ones(2, 12), torch.zeros(2, 12)).shape
        torch.Size([2, 12, 64])
    """

    def __init__(self, config: TextEncoderConfig, d_model: int, hf_config: Any = None) -> None:
        super().__init__()
        self.config = config
        if hf_config is not None:  # rebuilding a saved model: architecture from its config, weights loaded later
            self.encoder = AutoModel.from_config(hf_config)
            if hasattr(self.encoder, "pooler"):
                self.encoder.pooler = None
        elif config.path:
            with _quiet_transformers():
                try:  # BERT-like models can skip the pooler (unused, and an unused parameter breaks Opacus)
                    self.encoder = AutoModel.from_pretrained(config.path, local_files_only=True, add_pooling_layer=False)
                except TypeError:
                    self.encoder = AutoModel.from_pretrained(config.path, local_files_only=True)
            if getattr(self.encoder, "pooler", None) is not None:
                self.encoder.pooler = None
        else:
            bert_config = BertConfig(
                vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
                max_position_embeddings=config.max_length, hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=0.0, type_vocab_size=1,
            )
            self.encoder = BertModel(bert_config, add_pooling_layer=False)  # an unused pooler breaks Opacus
        hidden = self.encoder.config.hidden_size
        self.value_proj = nn.Linear(1, hidden)
        nn.init.normal_(self.value_proj.weight, std=0.5)
        nn.init.zeros_(self.value_proj.bias)
        self.out_proj = nn.Linear(hidden, d_model)
        numeric = Path(config.path) / "numeric_proj.safetensors" if config.path and hf_config is None else None
        if numeric is not None and numeric.is_file():  # a note reader pretrained by this project
            from safetensors.torch import load_file

            self.value_proj.load_state_dict(load_file(str(numeric)))
        if config.freeze:  # the pretrained reader stays as it is: encoder and numeric projection
            for p in [*self.encoder.parameters(), *self.value_proj.parameters()]:
                p.requires_grad_(False)

    def forward(self, note_ids: torch.Tensor, note_mask: torch.Tensor, note_values: torch.Tensor,
                word_embeds: torch.Tensor | None = None) -> torch.Tensor:
        return self.out_proj(self.hidden_states(note_ids, note_mask, note_values, word_embeds))  # (B, L, D)

    def hidden_states(self, note_ids: torch.Tensor, note_mask: torch.Tensor, note_values: torch.Tensor,
                      word_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's last hidden states (B, L, H), before the projection to the fusion width.

        ``word_embeds`` (B, L, H) replaces the word-embedding lookup of ``note_ids``: attributions interpolate
        there (Integrated Gradients on the token embeddings) without a hook on the embedding layer."""
        b, length = note_ids.shape
        words = self.encoder.get_input_embeddings()(note_ids) if word_embeds is None else word_embeds  # (B, L, H)
        is_number = (note_values > 0).unsqueeze(-1).to(words.dtype)
        embeds = words + is_number * self.value_proj(note_values.unsqueeze(-1).to(words.dtype))  # (B, L, H)
        idx = torch.arange(length, device=note_ids.device).expand(b, -1)  # (B, L), per sample
        out = self.encoder(inputs_embeds=embeds, attention_mask=note_mask, position_ids=idx,
                           token_type_ids=torch.zeros_like(note_ids))
        return out.last_hidden_state
