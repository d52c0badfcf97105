"""The starting model of a private federation: both readers frozen, the fusion pretrained without labels.

``workbench pretrain-fusion`` builds it: the CT reader's phantom corpus and a note corpus (the note generator
with a seed beside the note reader's own, so notes it has not read), handed in as corpus files by the caller
(training never runs the generator), become one-modality cases; the fusion layers learn to state each
corpus' facts linearly (``pretrain_fusion``); the model folder it writes is what
``workbench federate --init-model`` (``init-model`` in ``[tool.flwr.app.config]``) starts every node from. Under
DP a node then trains the fused head alone (``dp-train = head``, 65 weights). No cohort case and no malignancy
label is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from workbench.atomic import write_text
from workbench.data.corpus import CTCorpus, NoteCorpus, load_ct_corpus, load_note_corpus
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

CorpusFile = str | Path | Callable[[], Path]  # a corpus file, or a function that writes it and returns its path


@dataclass
class FusionInitConfig:
    ct_encoder: str  # a CT reader folder (``workbench pretrain-ct``)
    text_encoder: str  # a note reader folder (``workbench pretrain-notes``)
    ct_cases: int = 1500  # phantoms (the CT reader's corpus: its cached chunks are reused)
    notes: int = 3000  # notes of the fusion's note corpus (its own seed: notes the note reader has not read)
    steps: int = 600
    pairs: bool = True  # also made-up two-modality cases (see FusionPretrainConfig.pairs)
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


def fusion_corpora(model: NoduleRiskModel, ct: CTCorpus, notes: NoteCorpus) -> dict[str, ModalityCorpus]:
    """The two corpora as one-modality model inputs, each frozen reader's states computed once."""
    from workbench.train.pretrain_text import tokenized_notes

    assert model.ct_encoder is not None and model.text_encoder is not None and model.tokenizer is not None
    with torch.no_grad():
        cells = [model.ct_encoder.features(ct.ct_patch[s:s + 64].float(), ct.ct_context[s:s + 64].float())
                 for s in range(0, len(ct), 64)]
    ct_inputs = {"ct_patch_states": torch.cat([c[0] for c in cells]), "ct_context_states": torch.cat([c[1] for c in cells]),
                 "ct_position": ct.ct_position.float()}
    ids, mask, values = tokenized_notes(notes.texts, model.tokenizer, model.config.text.max_length)
    with torch.no_grad():
        states = torch.cat([model.text_encoder.hidden_states(ids[s:s + 128], mask[s:s + 128], values[s:s + 128])
                            for s in range(0, len(ids), 128)])
    note_inputs = {"note_ids": ids, "note_mask": mask, "note_values": values, "note_states": states}
    ct_facts, ct_counts = _standardised(ct.facts, ct.classes)
    note_facts, note_counts = _standardised(notes.facts, notes.classes)
    tp, cp = ct_inputs["ct_patch_states"].shape[1:]
    tc, cc = ct_inputs["ct_context_states"].shape[1:]
    shapes = (tp, cp, tc, cc)
    return {"ct": ModalityCorpus(one_modality_inputs(len(ct), "ct", ct=ct_inputs, ct_cells=shapes,
                                                     note_width=states.shape[-1]), ct_facts, ct_counts),
            "notes": ModalityCorpus(one_modality_inputs(len(ids), "notes", notes=note_inputs, ct_cells=shapes),
                                    note_facts, note_counts)}


def build_fusion_init(out_dir: str | Path, config: FusionInitConfig, ct_corpus: CorpusFile,
                      note_corpus: CorpusFile) -> Path:
    """Pretrain the fusion of a model with both readers frozen; write it as a model folder (reused if there).

    ``ct_corpus``: a CT corpus manifest, ``note_corpus``: a note corpus file (``workbench.cohort`` writes both;
    either may be a function that writes it and returns its path, called only when the model is built)."""
    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "fusion_init.json").is_file():
        return out
    for name, path in (("CT reader", config.ct_encoder), ("note reader", config.text_encoder)):
        if not path or not Path(path).is_dir():
            raise WorkbenchError(f"pretrain-fusion: {name} folder {path!r} not found")
    ct_file = Path(ct_corpus() if callable(ct_corpus) else ct_corpus)
    note_file = Path(note_corpus() if callable(note_corpus) else note_corpus)
    ct, notes = load_ct_corpus(ct_file), load_note_corpus(note_file)
    for file, have, want in ((ct_file, len(ct), config.ct_cases), (note_file, len(notes), config.notes)):
        if have != want:
            raise WorkbenchError(f"pretrain-fusion: {file} holds {have} cases, the config asks for {want}")
    torch.manual_seed(config.seed)
    model = build_model(ModelConfig(ct=CTEncoderConfig(path=config.ct_encoder, freeze=True),
                                    text=TextEncoderConfig(path=config.text_encoder, freeze=True)))
    model.eval()
    corpora = fusion_corpora(model, ct, notes)
    losses = pretrain_fusion(model, corpora, FusionPretrainConfig(steps=config.steps, seed=config.seed,
                                                                  progress=config.progress, pairs=config.pairs))
    with torch.no_grad():  # the risk head starts at "no evidence": log-odds 0 for every case until a node trains it
        model.fusion.head.weight.zero_()
        model.fusion.head.bias.zero_()
    card = fusion_init_card(config, losses, ct.seed, notes.seed)
    save_model(model, out, card)
    write_text(out / "fusion_init.json", json.dumps({"config": config.to_dict(), "ct_corpus_seed": ct.seed,
                                                     "note_corpus_seed": notes.seed, "losses": losses}, indent=2) + "\n")
    return out


def fusion_init_card(config: FusionInitConfig, losses: dict[str, float], ct_seed: int, note_seed: int) -> str:
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in sorted(losses.items()))
    return (
        "# Starting model for private federated training (label-free)\n\n"
        "Both readers frozen (CT reader, note reader); the projections and fusion layers pretrained so that each "
        f"modality's summary states its findings: {config.ct_cases} synthetic CT phantoms (seed {ct_seed}) "
        f"and {config.notes} synthetic notes (seed {note_seed}), {config.steps} steps"
        f"{', with made-up two-modality pairs' if config.pairs else ''}. No cohort case, no malignancy "
        "label: its risk head is untrained (it predicts nothing yet). Start a federation from it with "
        "`workbench federate COHORT --init-model THIS_DIR --config dp-train=head`.\n\n"
        "| fact (modality:fact) | final training loss |\n| --- | --- |\n" + rows + "\n"
    )


__all__ = ["FusionInitConfig", "build_fusion_init", "fusion_corpora"]
