"""The fusion model: missing modalities, padding, gate, bias, MoE, save/load, local pretrained encoders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.helpers.cases import random_cases, tiny_config
from workbench.models import TextEncoderConfig, build_model, load_model, save_model
from workbench.models.tokenizer import (
    TOKENIZER_DIR,
    load_tokenizer,
    normalize_note,
    numeric_values,
)
from workbench.runtime.encode import drop_modality


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    data = random_cases(6)
    return model, data


def test_missing_modality_is_masked_out_of_gate_and_attention(model_and_batch) -> None:
    model, data = model_and_batch
    batch = data.batch(torch.arange(len(data)))
    with torch.no_grad():
        out = model.forward_batch(batch, return_attention=True)
    assert torch.isfinite(out.logits).all()
    assert out.gate[2, 1] == 0.0 and out.gate[2, 0] == 1.0  # case 2 has no note
    assert out.gate[3, 0] == 0.0 and out.gate[3, 1] == 1.0  # case 3 has no CT
    assert torch.allclose(out.gate.sum(1), torch.ones(len(data)))
    # no query reads an absent modality's keys (case 2: the note keys get zero attention)
    notes = out.token_modality == 1
    for attn in out.attentions:
        assert attn[2][..., notes].abs().max() < 1e-6
    # whatever the absent note holds, case 2's answer does not move
    other = {k: v.clone() for k, v in batch.items()}
    other["note_ids"][2] = torch.randint(10, 1900, other["note_ids"][2].shape)
    other["note_mask"][2] = 1
    with torch.no_grad():
        again = model.forward_batch(other)
    assert torch.allclose(again.logits[2], out.logits[2], atol=1e-6)


def test_dropping_a_modality_keeps_a_prediction_with_zero_gate(model_and_batch) -> None:
    model, data = model_and_batch
    for removed, col in (("notes", 1), ("ct", 0)):
        sub = drop_modality(data, removed)
        with torch.no_grad():
            out = model.forward_batch(sub.batch(torch.arange(len(sub))))
        assert torch.isfinite(out.logits).all()
        assert out.gate[:, col].abs().max() == 0.0


def test_padding_is_masked_from_the_real_mask(model_and_batch) -> None:
    model, data = model_and_batch
    batch = data.batch(torch.arange(len(data)))
    changed = {k: v.clone() for k, v in batch.items()}
    changed["note_ids"][1, 10:] = 7  # case 1's padding (its mask is 0 from token 10)
    with torch.no_grad():
        a, b = model.forward_batch(batch).logits, model.forward_batch(changed).logits
    assert torch.allclose(a[1], b[1], atol=1e-6)


def test_cross_modality_bias_starts_penalised() -> None:
    model = build_model(tiny_config())
    m = model.fusion.layers[0].attn.bias.M
    assert torch.all(m[:, 0, 0] == 0) and torch.all(m[:, 0, 1] < 0) and torch.all(m[:, 1, 0] < 0)


def test_moe_flag_adds_a_load_balancing_loss() -> None:
    model = build_model(tiny_config(moe=True)).train()
    data = random_cases(6)
    out = model.forward_batch(data.batch(torch.arange(6)))
    assert out.aux_loss.item() > 0
    out.logits.sum().backward()
    assert model.fusion.layers[0].ffn.router.weight.grad is not None


def test_save_load_roundtrip_gives_the_same_logits(model_and_batch, tmp_path: Path) -> None:
    model, data = model_and_batch
    d = save_model(model, tmp_path / "model")
    assert {"model.safetensors", "config.json", "tokenizer.json", "MODEL_CARD.md"} <= {p.name for p in d.iterdir()}
    again = load_model(d)
    batch = data.batch(torch.arange(len(data)))
    with torch.no_grad():
        assert torch.allclose(model.forward_batch(batch).logits, again.forward_batch(batch).logits, atol=1e-6)
    assert json.loads((d / "config.json").read_text())["fusion"]["d_model"] == 32


def test_a_pretrained_encoder_saved_with_save_pretrained_loads_from_its_directory(tmp_path: Path, monkeypatch) -> None:
    from transformers import BertConfig, BertModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt would fail loudly
    vocab = len(load_tokenizer())
    pretrained = BertModel(BertConfig(vocab_size=vocab, hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=48, max_position_embeddings=64))
    pretrained.save_pretrained(tmp_path / "my_clinical_bert")
    config = tiny_config()
    config.text = TextEncoderConfig(path=str(tmp_path / "my_clinical_bert"), max_length=24)
    model = build_model(config).eval()
    emb = model.text_encoder.encoder.get_input_embeddings().weight
    assert torch.equal(emb, pretrained.get_input_embeddings().weight)
    data = random_cases(6)
    with torch.no_grad():
        out = model.forward_batch(data.batch(torch.arange(6)))
    assert out.logits.shape == (6,)
    saved = save_model(model, tmp_path / "model")  # rebuilt later without the original directory
    os.rename(tmp_path / "my_clinical_bert", tmp_path / "gone")
    assert load_model(saved).text_encoder.encoder.config.hidden_size == 48


def test_note_normalisation_and_numeric_values() -> None:
    assert normalize_note("a sixty-five year old; BP one hundred fifty-three over eighty-one") == "a 65 year old; BP 153 over 81"
    assert normalize_note("seventy year old, none, one") == "70 year old, none, 1"
    tok = load_tokenizer()
    ids = torch.tensor([tok("78 year old", add_special_tokens=False)["input_ids"]])
    values = numeric_values(tok, ids)
    assert values[0, 0].item() == pytest.approx(0.78) and values[0, 1:].abs().sum() == 0


def test_shipped_tokenizer_comes_from_non_patient_text_alone(tiny_cohort: Path) -> None:
    """Every whole-word token of the shipped vocabulary occurs in the generator's templates, the word lists or
    the numbers; no name, MRN or other PHI string of generated notes is a token."""
    import re

    from workbench.models.tokenizer import MEDICAL_WORDS, PLACEHOLDER_WORDS, _template_corpus

    corpus = normalize_note(" ".join(_template_corpus() + MEDICAL_WORDS + [str(i) for i in range(301)])).lower()
    words = set(re.findall(r"\w+|[^\w\s]", corpus))
    vocab = load_tokenizer(TOKENIZER_DIR).get_vocab()
    whole = [t for t in vocab if not t.startswith("##") and not t.startswith("[") and len(t) > 1]
    assert whole and all(any(t in w for w in words) for t in whole)
    rows = [json.loads(line) for line in (tiny_cohort / "truth.jsonl").read_text().splitlines() if line.strip()]
    phi = {p.lower() for r in rows for p in r["phi"] if len(p) > 3}
    assert phi
    assert not phi & set(vocab)
    assert {p.lower() for p in PLACEHOLDER_WORDS} <= set(vocab)
