"""The CT reader: pretrained on the annotated corpus, saved, loaded frozen into the model, and kept frozen."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.cohort.ct_corpus import write_ct_corpus
from workbench.data.corpus import CTCorpus, load_ct_corpus, phantom_inputs
from workbench.errors import WorkbenchError
from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.model import ModelConfig, build_model, load_model, save_model
from workbench.train.pretrain_ct import CTReaderConfig, pretrain_ct_reader, save_ct_reader


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ct_corpus")


@pytest.fixture(scope="module")
def corpus(corpus_dir: Path) -> CTCorpus:
    return load_ct_corpus(write_ct_corpus(4, corpus_dir, phantom_inputs, workers=1, progress=False))


@pytest.fixture(scope="module")
def noisy_corpus(corpus: CTCorpus, corpus_dir: Path) -> CTCorpus:
    """The same four phantoms (chunks reused) with one simulated radiologist's annotations beside the truth."""
    return load_ct_corpus(write_ct_corpus(4, corpus_dir, phantom_inputs, workers=1, progress=False,
                                          annotation_noise=True))


@pytest.fixture(scope="module")
def reader(corpus: CTCorpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = CTReaderConfig(n_cases=len(corpus), epochs=2, batch_size=2, val_share=0.25, progress=False)
    enc, report = pretrain_ct_reader(corpus, config)
    assert report["n_val"] == 1 and set(report["val_loss"]) == set(corpus.facts)
    return save_ct_reader(enc, tmp_path_factory.mktemp("readers") / "ct_reader", config, 77_077, report)


def test_pretraining_lowers_the_annotation_loss(corpus: CTCorpus) -> None:
    """On its own training cases (4 of them), 60 epochs must fit the annotations much better than 1."""
    def train_loss(epochs: int) -> float:
        enc, report = pretrain_ct_reader(corpus, CTReaderConfig(epochs=epochs, batch_size=4, val_share=0.0, lr=3e-3,
                                                                progress=False))
        return sum(report["val_loss"].values())  # val_share 0: reported on the training cases

    assert train_loss(60) < 0.6 * train_loss(1)


def test_reader_loads_frozen_into_the_model_and_stays_frozen(reader: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(reader / "ct_reader.safetensors"))
    model = build_model(ModelConfig(modalities=("ct",), ct=CTEncoderConfig(path=str(reader), freeze=True)))
    enc = model.ct_encoder
    assert enc is not None
    for k, v in enc.state_dict().items():  # the convolutions and (same width) the projections come from the reader
        assert torch.equal(v, state[k]), k
    assert not any(p.requires_grad for p in [*enc.patch_net.parameters(), *enc.context_net.parameters()])
    assert enc.finding is not None and not any(p.requires_grad for p in enc.finding.parameters())
    assert model.ct_encoder.n_tokens == 74  # type: ignore[union-attr]  # 64 patch + 8 context + position + finding
    assert all(p.requires_grad for p in enc.patch_proj.parameters())
    before = {k: v.clone() for k, v in enc.patch_net.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(torch.rand(2, 1, 32, 32, 32), torch.rand(2, 2, 32, 32, 32), torch.rand(2, 3), None, None, None,
                torch.tensor([[True, False], [True, False]]))
    out.logits.sum().backward()
    opt.step()
    assert all(torch.equal(v, before[k]) for k, v in enc.patch_net.state_dict().items())
    loaded = load_model(save_model(model, tmp_path / "model"))  # a saved model needs no reader folder
    assert loaded.config.ct.freeze and loaded.config.ct.path is None
    assert not any(p.requires_grad for p in loaded.ct_encoder.patch_net.parameters())  # type: ignore[union-attr]
    assert torch.equal(loaded.ct_encoder.patch_net[0].conv.weight, enc.patch_net[0].conv.weight)  # type: ignore[union-attr,index]


def test_a_folder_that_is_no_reader_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="not a CT reader directory"):
        build_model(ModelConfig(modalities=("ct",), ct=CTEncoderConfig(path=str(tmp_path))))


def test_pretrain_ct_command(tmp_path: Path) -> None:
    out = tmp_path / "reader"
    res = subprocess.run([sys.executable, "-m", "workbench.cli", "pretrain-ct", "--out", str(out), "--cases", "2",
                          "--epochs", "1", "--workers", "1", "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["cases"] == 2 and (out / "ct_reader.safetensors").is_file() and (out / "README.md").is_file()
    again = subprocess.run([sys.executable, "-m", "workbench.cli", "pretrain-ct", "--out", str(out), "--quiet"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "not empty" in again.stderr


def test_annotation_noise_off_changes_nothing_on_changes_the_targets_not_the_yardstick(
        corpus: CTCorpus, noisy_corpus: CTCorpus) -> None:
    """Off: a corpus carrying noisy annotations trains exactly as the clean one. On: the reader learns the noisy
    annotations, and its figures (reported on its 4 training cases, val_share 0) are still against the clean
    truth: the annotator's own figures equal what the annotations and the truth give by hand."""
    base = {"n_cases": 4, "epochs": 1, "batch_size": 2, "val_share": 0.0, "progress": False}
    _, clean_report = pretrain_ct_reader(corpus, CTReaderConfig(**base))
    _, off_report = pretrain_ct_reader(noisy_corpus, CTReaderConfig(**base))
    assert off_report == clean_report and clean_report["annotations"] == "clean" and "annotator" not in off_report
    _, report = pretrain_ct_reader(noisy_corpus, CTReaderConfig(**base, annotation_noise=True))
    assert report["annotations"] == "noisy" and report["val_loss"] != clean_report["val_loss"]
    clean, noisy = corpus.facts, noisy_corpus.annotations
    assert noisy is not None
    by_hand = float(np.abs(np.exp(noisy["log_diameter"]) - np.exp(clean["log_diameter"])).mean())
    assert report["annotator"]["diameter_mae_mm"] == pytest.approx(by_hand, rel=1e-5) and by_hand > 0
    assert report["annotator"]["nodule_type_accuracy"] == pytest.approx(
        float((noisy["nodule_type"] == clean["nodule_type"]).mean()))
    assert report["annotator"]["emphysema_accuracy"] == 1.0  # emphysema is not a noisy fact


def test_a_reader_taught_wrong_annotations_is_scored_against_the_truth(corpus: CTCorpus) -> None:
    """Annotations that invert spiculation: the reader learns them (on its own 4 cases) and the report, measured
    against the clean truth, says it is wrong, as the annotator is."""
    inverted = {"spiculated": 1.0 - corpus.facts["spiculated"]}
    wrong = replace(corpus, annotations=inverted, annotation_noise={"note": "inverted spiculation"})
    _, report = pretrain_ct_reader(wrong, CTReaderConfig(epochs=40, batch_size=4, val_share=0.0, progress=False,
                                                         annotation_noise=True))
    assert report["annotator"]["spiculated_accuracy"] == 0.0
    assert report["spiculated_accuracy"] <= 0.25  # fits the inverted labels, so fails the truth


def test_pretrain_ct_command_with_annotation_noise_records_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "reader"
    assert main(["pretrain-ct", "--out", str(out), "--cases", "2", "--epochs", "1", "--workers", "1", "--quiet",
                 "--annotation-noise"]) == 0
    summary = json.loads(capsys.readouterr().out)
    meta = json.loads((out / "ct_reader.json").read_text())
    assert summary["annotations"] == meta["annotations"] == "noisy" and meta["pretraining"]["annotation_noise"]
    assert meta["annotation_noise"]["facts"] == ["log_diameter", "nodule_type", "spiculated"]
    assert "annotator" in meta["report"] and "Trained on noisy annotations" in (out / "README.md").read_text()


def test_cached_ct_states_give_the_same_model_and_private_step(reader: Path) -> None:
    """A frozen reader's convolution cells, computed once, must change nothing but the speed: the same logits,
    and (vmap DP engine) the same per-sample gradients as a loop over batches of one."""
    from workbench.runtime.encode import EncodedCases, with_ct_states
    from workbench.train.dp_vmap import per_sample_grads
    from workbench.train.loss import loss_fn

    torch.manual_seed(0)
    model = build_model(ModelConfig(modalities=("ct",), ct=CTEncoderConfig(path=str(reader), freeze=True))).eval()
    n = 5
    t = {"ct_patch": torch.rand(n, 1, 32, 32, 32).half(), "ct_context": torch.rand(n, 2, 32, 32, 32).half(),
         "ct_position": torch.rand(n, 3), "note_ids": torch.zeros(n, 1, dtype=torch.long),
         "note_mask": torch.zeros(n, 1, dtype=torch.long), "note_values": torch.zeros(n, 1),
         "modality_mask": torch.tensor([[True, False]] * n), "label": torch.tensor([1.0, 0, 0, 1, 0])}
    data = EncodedCases([f"c{i}" for i in range(n)], ["s"] * n, t)
    cached = with_ct_states(model, data)
    plain, fast = data.batch(torch.arange(n)), cached.batch(torch.arange(n))
    assert torch.allclose(model.forward_batch(plain).logits, model.forward_batch(fast).logits, atol=1e-5)
    fast_no_images = {k: v for k, v in fast.items() if k not in ("ct_patch", "ct_context")}  # states suffice
    assert torch.allclose(model.forward_batch(fast_no_images).logits, model.forward_batch(plain).logits, atol=1e-5)
    grads = per_sample_grads(model, fast, pos_weight=2.0, aux_weight=0.3)
    assert "ct_encoder.patch_net.0.conv.weight" not in grads and "ct_encoder.patch_proj.weight" in grads
    for i in range(n):
        model.zero_grad()
        one = {k: v[i:i + 1] for k, v in plain.items()}
        loss_fn(model.forward_batch(one), one, 2.0, 0.3, reduction="none").sum().backward()
        for name, g in grads.items():
            p = dict(model.named_parameters())[name]
            ref = p.grad if p.grad is not None else torch.zeros_like(p)
            assert torch.allclose(g[i], ref, atol=1e-5), name
