"""The whole model: CT encoder + note encoder + gated fusion, its config, and its directory on disk.

A saved model is a directory that needs nothing else: ``model.safetensors`` (weights), ``config.json`` (the
dataclass configs, versioned and free of machine paths: ``workbench.models.config``), the tokenizer files, the
note encoder's own ``text_encoder/config.json`` (so an encoder that came from a local pretrained directory is
rebuilt without it), and ``MODEL_CARD.md``. Written through ``atomic_write``: a killed save leaves the previous
model intact, and the folder can be copied to another machine.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, PreTrainedTokenizerFast

from workbench.atomic import atomic_write
from workbench.errors import WorkbenchError
from workbench.jsonout import write_json
from workbench.models.config import ModelConfig, migrate_model_config
from workbench.models.ct_encoder import CTEncoder
from workbench.models.fusion import MODALITIES, FusionOutput, FusionTransformer
from workbench.models.text_encoder import TextEncoder
from workbench.models.tokenizer import TOKENIZER_DIR, load_tokenizer, numeric_table

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


POSITIONAL = ("ct_patch", "ct_context", "ct_position", "note_ids", "note_mask", "note_values", "modality_mask")
"""The positional inputs of ``NoduleRiskModel.forward``, in order (what Opacus and vmap call the model with)."""
STATE_KEYS = ("note_states", "ct_patch_states", "ct_context_states")
"""Optional keyword inputs: a frozen reader's outputs, precomputed once per case (``with_note_states``,
``with_ct_states``); the model then skips that reader."""


class NoduleRiskModel(nn.Module):
    """Batch tensors in (explicit arguments, so Captum can attribute each), ``FusionOutput`` out.

    ``modality_mask`` (B, 2) bool, columns in ``MODALITIES`` order, says which modalities each case has; an
    encoder the model lacks ignores its inputs (they may be None).
    """

    def __init__(self, config: ModelConfig, tokenizer: PreTrainedTokenizerFast | None = None,
                 hf_text_config: Any = None) -> None:
        super().__init__()
        unknown = set(config.modalities) - set(MODALITIES)
        if unknown or not config.modalities:
            raise WorkbenchError(f"modalities {list(config.modalities)}: expected a subset of {list(MODALITIES)}")
        self.config = config
        self.modalities = tuple(m for m in MODALITIES if m in config.modalities)
        self.tokenizer = tokenizer
        d = config.fusion.d_model
        self.ct_encoder = CTEncoder(config.ct, d) if "ct" in self.modalities else None
        self.text_encoder = TextEncoder(config.text, d, hf_text_config) if "notes" in self.modalities else None
        self.fusion = FusionTransformer(config.fusion, self.modalities)
        if tokenizer is not None:
            self.register_buffer("number_table", numeric_table(tokenizer), persistent=False)

    def forward(self, ct_patch: torch.Tensor | None, ct_context: torch.Tensor | None, ct_position: torch.Tensor | None,
                note_ids: torch.Tensor | None, note_mask: torch.Tensor | None, note_values: torch.Tensor | None,
                modality_mask: torch.Tensor, return_attention: bool = False,
                note_states: torch.Tensor | None = None, ct_patch_states: torch.Tensor | None = None,
                ct_context_states: torch.Tensor | None = None, note_embeds: torch.Tensor | None = None) -> FusionOutput:
        """``note_states``: the frozen note encoder's hidden states when precomputed (``with_note_states``);
        ``ct_patch_states`` / ``ct_context_states``: the frozen CT reader's convolution cells (``with_ct_states``);
        then that encoder is skipped and only its projections run. ``note_embeds``: the note's word embeddings
        in place of the lookup of ``note_ids`` (what note attributions interpolate)."""
        tokens, valid = {}, {}
        if self.ct_encoder is not None:
            assert ct_position is not None
            t = self.ct_encoder(ct_patch, ct_context, ct_position, ct_patch_states, ct_context_states)  # (B, Tc, D)
            tokens["ct"] = t
            valid["ct"] = modality_mask[:, 0:1].expand(-1, t.shape[1])  # (B, Tc)
        if self.text_encoder is not None:
            assert note_mask is not None
            if note_states is not None:
                tokens["notes"] = self.text_encoder.out_proj(note_states)  # (B, Tn, D)
            else:
                assert note_ids is not None and note_values is not None
                tokens["notes"] = self.text_encoder(note_ids, note_mask, note_values, note_embeds)  # (B, Tn, D)
            valid["notes"] = note_mask.bool() & modality_mask[:, 1:2]  # real padding and presence
        return self.fusion(tokens, valid, return_attention)

    def forward_batch(self, batch: dict[str, torch.Tensor], return_attention: bool = False) -> FusionOutput:
        """The thin adapter from a keyed batch to ``forward``."""
        return self(batch.get("ct_patch"), batch.get("ct_context"), batch.get("ct_position"), batch.get("note_ids"),
                    batch.get("note_mask"), batch.get("note_values"), batch["modality_mask"], return_attention,
                    **{k: batch.get(k) for k in STATE_KEYS}, note_embeds=batch.get("note_embeds"))


def build_model(config: ModelConfig | None = None) -> NoduleRiskModel:
    """A fresh model from dataclass configs, with the tokenizer it reads notes with.

    ``config`` is left as it is: the model holds a resolved copy (the tokenizer's folder and vocabulary size
    filled in), so one config can build several models, and a caller's config never changes under it.

    Example:
        >>> model = build_model(ModelConfig(modalities=("ct",)))
        >>> model.modalities
        ('ct',)
    """
    config = copy.deepcopy(config) if config is not None else ModelConfig()
    if config.text.path and (Path(config.text.path) / "tokenizer.json").is_file():
        config.tokenizer_path = config.text.path  # a pretrained encoder comes with the tokenizer it was trained with
    tokenizer = load_tokenizer(config.tokenizer_path or TOKENIZER_DIR)
    if config.text.path is None:
        config.text.vocab_size = len(tokenizer)
    return NoduleRiskModel(config, tokenizer)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_model(model: NoduleRiskModel, out_dir: str | Path, card: str | None = None) -> Path:
    """Write the model directory atomically (a temporary sibling folder, swapped in whole).

    ``config.json`` is ``ModelConfig.to_saved_dict``: versioned, no machine path; everything loading needs is
    in the folder."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        tmp.mkdir()
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        write_json(tmp / CONFIG, model.config.to_saved_dict())
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        if model.text_encoder is not None:
            model.text_encoder.encoder.config.save_pretrained(str(tmp / "text_encoder"))
        (tmp / "MODEL_CARD.md").write_text(card or _card_stub(model), encoding="utf-8")
    return out


def read_model_config(model_dir: str | Path) -> ModelConfig:
    """A model folder's ``config.json``, any version, through ``migrate_model_config``; its relative
    ``tokenizer_path`` resolved against the folder. Raises WorkbenchError naming the file."""
    f = Path(model_dir) / CONFIG
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WorkbenchError(f"{f}: cannot read the model config ({e})") from e
    try:
        config = ModelConfig.from_dict(migrate_model_config(raw, f))
    except (TypeError, ValueError) as e:  # an unknown field, a wrong type
        raise WorkbenchError(f"{f}: not a model config this workbench reads ({e})") from e
    config.tokenizer_path = str(Path(model_dir) / (config.tokenizer_path or "."))
    return config


def load_model(model_dir: str | Path, map_location: str = "cpu") -> NoduleRiskModel:
    """A model directory -> the model in eval mode. Raises WorkbenchError naming what is missing.

    Needs nothing outside the folder: the pretrained readers a model was built from are inside its weights."""
    d = Path(model_dir)
    for name in (CONFIG, WEIGHTS):
        if not (d / name).is_file():
            raise WorkbenchError(f"{d}: not a model directory ({name} is missing)")
    config = read_model_config(d)
    config.ct.path = config.text.path = None  # every weight, the pretrained readers' included, is in the model file
    hf_config = None
    if "notes" in config.modalities:
        hf_config = AutoConfig.from_pretrained(str(d / "text_encoder"), local_files_only=True)
    model = NoduleRiskModel(config, load_tokenizer(config.tokenizer_path or d), hf_config)
    state = load_file(str(d / WEIGHTS), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WorkbenchError(f"{d / WEIGHTS}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def _card_stub(model: NoduleRiskModel) -> str:
    return (
        "# Model card (stub)\n\n"
        f"Pulmonary nodule malignancy risk from {' + '.join(model.modalities)}; {trainable_parameters(model):,} "
        "trainable parameters. Decision support for research, not a diagnosis. Trained on the synthetic cohort "
        "unless the run says otherwise; see the run's metrics.json and data_cards/model_card.md.\n"
    )
