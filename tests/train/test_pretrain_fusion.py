"""Label-free fusion pretraining: each modality's summary learns to state its corpus' facts; the gate ends even."""

from __future__ import annotations

import torch

from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.model import ModelConfig, build_model
from workbench.models.text_encoder import TextEncoderConfig
from workbench.train.pretrain_fusion import (
    FusionPretrainConfig,
    ModalityCorpus,
    one_modality_inputs,
    pretrain_fusion,
)


def test_summaries_learn_their_facts_and_the_gate_ends_even() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(ct=CTEncoderConfig(freeze=True), text=TextEncoderConfig(freeze=True)))
    n, width = 64, 8
    p, c = torch.randn(n, 64, 64), torch.randn(n, 8, 32)
    ct_fact = (p[:, :, 0].mean(1) > 0).float()  # a finding the CT cells carry
    ids = torch.randint(5, 50, (n, width))
    states = torch.randn(n, width, 64)
    note_fact = states[:, :, 3].mean(1) * 3  # a number the note states carry
    corpora = {
        "ct": ModalityCorpus(one_modality_inputs(n, "ct", ct={"ct_patch_states": p, "ct_context_states": c,
                                                             "ct_position": torch.rand(n, 3)}),
                             {"finding": ct_fact}, {"finding": 2}),
        "notes": ModalityCorpus(one_modality_inputs(n, "notes", notes={
            "note_ids": ids, "note_mask": torch.ones(n, width, dtype=torch.long), "note_values": torch.zeros(n, width),
            "note_states": states}), {"age": note_fact}, {"age": 1}),
    }
    before = pretrain_fusion(model, corpora, FusionPretrainConfig(steps=1, batch_size=32, progress=False))
    after = pretrain_fusion(model, corpora, FusionPretrainConfig(steps=150, batch_size=32, lr=3e-3, progress=False))
    assert after["ct:finding"] < 0.5 * before["ct:finding"]
    assert after["notes:age"] < 0.5 * before["notes:age"]
    both = {**corpora["ct"].inputs, "note_ids": ids[:4], "note_mask": torch.ones(4, width, dtype=torch.long),
            "note_values": torch.zeros(4, width), "note_states": states[:4], "modality_mask": torch.ones(4, 2, dtype=torch.bool)}
    both = {k: (v[:4] if v is not None else None) for k, v in both.items()}
    with torch.no_grad():
        gate = model(**both).gate
    assert torch.allclose(gate, torch.full_like(gate, 0.5))  # zeroed last layer: an even gate


def test_pairs_teach_both_facts_from_the_fused_two_modality_case() -> None:
    """With made-up pairs, the same fact heads read s_ct + s_note: both facts come out of a two-modality case."""

    torch.manual_seed(0)
    model = build_model(ModelConfig(ct=CTEncoderConfig(freeze=True), text=TextEncoderConfig(freeze=True)))
    n, width = 64, 8
    p, c = torch.randn(n, 64, 64), torch.randn(n, 8, 32)
    states = torch.randn(n, width, 64)
    corpora = {
        "ct": ModalityCorpus(one_modality_inputs(n, "ct", ct={"ct_patch_states": p, "ct_context_states": c,
                                                             "ct_position": torch.rand(n, 3)}),
                             {"finding": (p[:, :, 0].mean(1) > 0).float()}, {"finding": 2}),
        "notes": ModalityCorpus(one_modality_inputs(n, "notes", notes={
            "note_ids": torch.randint(5, 50, (n, width)), "note_mask": torch.ones(n, width, dtype=torch.long),
            "note_values": torch.zeros(n, width), "note_states": states}), {"age": states[:, :, 3].mean(1) * 3}, {"age": 1}),
    }
    before = pretrain_fusion(model, corpora, FusionPretrainConfig(steps=1, batch_size=32, progress=False, pairs=True))
    after = pretrain_fusion(model, corpora, FusionPretrainConfig(steps=150, batch_size=32, lr=3e-3, progress=False,
                                                                 pairs=True))
    assert after["pair:ct:finding"] < 0.5 * before["pair:ct:finding"]
    assert after["pair:notes:age"] < 0.5 * before["pair:notes:age"]


def test_pretrain_fusion_command_writes_a_starting_model(tmp_path) -> None:  # noqa: ANN001
    """Tiny readers, a few phantoms and notes: a model folder that loads, with an untrained head and an even gate."""
    import json
    import subprocess
    import sys

    from workbench.cohort.ct_corpus import write_ct_corpus
    from workbench.data.corpus import load_ct_corpus, phantom_inputs
    from workbench.models.model import load_model
    from workbench.train.pretrain_ct import CTReaderConfig, pretrain_ct_reader, save_ct_reader

    corpus_dir = tmp_path / "corpus"
    corpus = load_ct_corpus(write_ct_corpus(4, corpus_dir, phantom_inputs, workers=1, progress=False))
    config = CTReaderConfig(n_cases=4, epochs=1, batch_size=2, val_share=0.25, progress=False)
    enc, report = pretrain_ct_reader(corpus, config)
    ct_reader = save_ct_reader(enc, tmp_path / "ct_reader", config, 77_077, report)
    notes = tmp_path / "note_reader"
    run = [sys.executable, "-m", "workbench.cli"]
    res = subprocess.run([*run, "pretrain-notes", "--out", str(notes), "--notes", "40", "--epochs", "1", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "init"
    res = subprocess.run([*run, "pretrain-fusion", "--out", str(out), "--ct-encoder", str(ct_reader), "--text-encoder",
                          str(notes), "--cases", "4", "--notes", "40", "--steps", "3", "--corpus", str(corpus_dir),
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    assert meta["config"]["pairs"] and "ct:brock_size" in meta["losses"] and "notes:age" in meta["losses"]
    model = load_model(out)
    assert float(model.fusion.head.weight.abs().sum()) == 0.0 and float(model.fusion.gate_mlp[-1].weight.abs().sum()) == 0.0
    assert "No cohort case, no malignancy label" in (out / "MODEL_CARD.md").read_text()
    bad = subprocess.run([*run, "pretrain-fusion", "--out", str(tmp_path / "x"), "--ct-encoder", str(tmp_path / "nope"),
                          "--text-encoder", str(notes), "--quiet"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "CT reader folder" in bad.stderr
