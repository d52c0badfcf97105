"""The starting model of a private federation: both readers frozen, the fusion pretrained without labels.

``workbench pretrain-fusion`` builds it: the CT reader's phantom corpus and a note corpus (the note generator
with a seed beside the note reader's own, so notes it has not read) become one-modality cases; the fusion
layers learn to state each corpus' facts linearly (``pretrain_fusion``); the model folder it writes is what
``workbench federate --init-model`` (``init-model`` in ``[tool.flwr.app.config]``) starts every node from. Under
DP a node then trains the fused head alone (``dp-train = head``, 65 weights). No cohort case and no malignancy
label is read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from workbench.cohort.ct_corpus import CLASSES as CT_CLASSES
from workbench.cohort.ct_corpus import CT_CORPUS_SEED, ct_corpus
from workbench.cohort.note_corpus import CLASSES as NOTE_CLASSES
from workbench.cohort.note_corpus import CORPUS_SEED, note_corpus
from workbench.errors import WorkbenchError
from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.model import ModelConfig, NoduleRiskModel, build_model, save_model
from workbench.models.text_encoder import TextEncoderConfig
from workbench.train.pretrain_ct import standard_log_diameter
from workbench.train.pretrain_fusion import (
    FusionPretrainConfig,
    ModalityCorpus,
    one_modality_inputs,
    pretrain_fusion,
)
from workbench.train.pretrain_text import standard_age

NOTE_SEED = CORPUS_SEED + 1  # beside the note reader's corpus: notes the reader has not seen


@dataclass
class FusionInitConfig:
    ct_encoder: str  # a CT reader folder (``workbench pretrain-ct``)
    text_encoder: str  # a note reader folder (``workbench pretrain-notes``)
    ct_cases: int = 1500  # phantoms (the CT reader's corpus: its cached chunks are reused)
    notes: int = 3000
    steps: int = 600
    pairs: bool = True  # also made-up two-modality cases (see FusionPretrainConfig.pairs)
    corpus_dir: str = ""  # where the phantom chunks live ("" = a hidden sibling of the output folder)
    seed: int = 0
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _standardised(facts: dict[str, Any], classes: dict[str, tuple[str, ...]]) -> tuple[dict[str, torch.Tensor],
                                                                                          dict[str, int]]:
    """Facts as training targets (log diameter and age brought to about unit spread) and their class counts."""
    out, counts = {}, {}
    for k, v in facts.items():
        t = torch.as_tensor(v, dtype=torch.float32)
        if k == "log_diameter":
            # the published size term of the Brock model, (diameter / 10 mm)^-0.5, is a fact too: risk is
            # linear in it, not in log diameter (a clinical transform, not a label)
            size = (torch.exp(t) / 10.0) ** -0.5
            out["brock_size"] = (size - size.mean()) / size.std().clamp_min(1e-6)
            counts["brock_size"] = 1
            t = standard_log_diameter(t)
        elif k == "age":
            t = standard_age(t)
        out[k] = t
        counts[k] = len(classes[k]) if k in classes else (1 if k in ("log_diameter", "age") else 2)
    return out, counts


def fusion_corpora(model: NoduleRiskModel, config: FusionInitConfig, corpus_dir: Path) -> dict[str, ModalityCorpus]:
    """The two corpora as one-modality model inputs, each frozen reader's states computed once."""
    from workbench.train.pretrain_text import tokenized_notes

    assert model.ct_encoder is not None and model.text_encoder is not None and model.tokenizer is not None
    ct = ct_corpus(config.ct_cases, corpus_dir, progress=config.progress)
    with torch.no_grad():
        cells = [model.ct_encoder.features(ct.ct_patch[s:s + 64].float(), ct.ct_context[s:s + 64].float())
                 for s in range(0, len(ct), 64)]
    ct_inputs = {"ct_patch_states": torch.cat([c[0] for c in cells]), "ct_context_states": torch.cat([c[1] for c in cells]),
                 "ct_position": ct.ct_position.float()}
    notes = note_corpus(config.notes, seed=NOTE_SEED)
    ids, mask, values = tokenized_notes(notes.texts, model.tokenizer, model.config.text.max_length)
    with torch.no_grad():
        states = torch.cat([model.text_encoder.hidden_states(ids[s:s + 128], mask[s:s + 128], values[s:s + 128])
                            for s in range(0, len(ids), 128)])
    note_inputs = {"note_ids": ids, "note_mask": mask, "note_values": values, "note_states": states}
    ct_facts, ct_counts = _standardised(ct.facts, CT_CLASSES)
    note_facts, note_counts = _standardised(notes.facts, NOTE_CLASSES)
    tp, cp = ct_inputs["ct_patch_states"].shape[1:]
    tc, cc = ct_inputs["ct_context_states"].shape[1:]
    shapes = (tp, cp, tc, cc)
    return {"ct": ModalityCorpus(one_modality_inputs(len(ct), "ct", ct=ct_inputs, ct_cells=shapes,
                                                     note_width=states.shape[-1]), ct_facts, ct_counts),
            "notes": ModalityCorpus(one_modality_inputs(len(ids), "notes", notes=note_inputs, ct_cells=shapes),
                                    note_facts, note_counts)}


def build_fusion_init(out_dir: str | Path, config: FusionInitConfig) -> Path:
    """Pretrain the fusion of a model with both readers frozen; write it as a model folder (reused if there)."""
    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "fusion_init.json").is_file():
        return out
    for name, path in (("CT reader", config.ct_encoder), ("note reader", config.text_encoder)):
        if not path or not Path(path).is_dir():
            raise WorkbenchError(f"pretrain-fusion: {name} folder {path!r} not found")
    torch.manual_seed(config.seed)
    model = build_model(ModelConfig(ct=CTEncoderConfig(path=config.ct_encoder, freeze=True),
                                    text=TextEncoderConfig(path=config.text_encoder, freeze=True)))
    model.eval()
    corpus_dir = Path(config.corpus_dir) if config.corpus_dir else out.with_name(f".{out.name}.ct_corpus")
    corpora = fusion_corpora(model, config, corpus_dir)
    losses = pretrain_fusion(model, corpora, FusionPretrainConfig(steps=config.steps, seed=config.seed,
                                                                  progress=config.progress, pairs=config.pairs))
    with torch.no_grad():  # the risk head starts at "no evidence": log-odds 0 for every case until a node trains it
        model.fusion.head.weight.zero_()
        model.fusion.head.bias.zero_()
    card = fusion_init_card(config, losses)
    save_model(model, out, card)
    (out / "fusion_init.json").write_text(json.dumps({"config": config.to_dict(), "ct_corpus_seed": CT_CORPUS_SEED,
                                                      "note_corpus_seed": NOTE_SEED, "losses": losses}, indent=2) + "\n",
                                          encoding="utf-8")
    return out


def fusion_init_card(config: FusionInitConfig, losses: dict[str, float]) -> str:
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in sorted(losses.items()))
    return (
        "# Starting model for private federated training (label-free)\n\n"
        "Both readers frozen (CT reader, note reader); the projections and fusion layers pretrained so that each "
        f"modality's summary states its findings: {config.ct_cases} synthetic CT phantoms (seed {CT_CORPUS_SEED}) "
        f"and {config.notes} synthetic notes (seed {NOTE_SEED}), {config.steps} steps"
        f"{', with made-up two-modality pairs' if config.pairs else ''}. No cohort case, no malignancy "
        "label: its risk head is untrained (it predicts nothing yet). Start a federation from it with "
        "`workbench federate COHORT --init-model THIS_DIR --config dp-train=head`.\n\n"
        "| fact (modality:fact) | final training loss |\n| --- | --- |\n" + rows + "\n"
    )


__all__ = ["FusionInitConfig", "build_fusion_init", "fusion_corpora"]
