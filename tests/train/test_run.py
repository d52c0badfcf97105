"""Training on the tiny cohort (workbench.train): the RUN folder it writes, the CLI's refusals, seeding and resume,
the pretrained note reader. Using a RUN (evaluate, predict) is tests/runtime/test_run.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.data import load_cases
from workbench.models import build_model
from workbench.runtime.encode import EncodedCases, encode_cases
from workbench.train.trainer import TrainConfig, train_model


def test_a_run_folder_holds_model_calibration_log_and_curve(tiny_run: Path) -> None:
    for name in ("model/model.safetensors", "model/config.json", "model/tokenizer.json", "calibration.json",
                 "train_log.json", "training_curve.png"):
        assert (tiny_run / name).is_file(), name
    assert not (tiny_run / ".checkpoint").exists()
    log = json.loads((tiny_run / "train_log.json").read_text())
    assert log["n_train"] > 0 and len(log["history"]) == 2 and log["trainable_params"] > 100_000
    assert json.loads((tiny_run / "calibration.json").read_text())["temperature"] > 0


def test_train_cli_refuses_a_bad_modality_with_one_line(tiny_cohort: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "train", str(tiny_cohort), "--out", str(tmp_path / "r"),
                          "--modalities", "ct,xray"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "xray" in out.stderr


def test_training_is_seeded_and_resumes_from_its_checkpoint(tiny_cohort: Path, tmp_path: Path) -> None:
    from tests.helpers.cases import tiny_config
    from workbench.data.cache import PreprocessCache

    model = build_model(tiny_config())
    cases = [c for site in sorted(tiny_cohort.iterdir()) if (site / "manifest.csv").exists() for c in load_cases(site)]
    cache = PreprocessCache(tmp_path / "cache")
    from workbench.data.transforms import PreprocessConfig

    pre = PreprocessConfig(patch_size=16, context_size=16)
    data = encode_cases([c for c in cases if c.split == "train"], model.tokenizer, cache=cache, preprocess=pre,
                        progress=False, max_length=24)

    class Killed(Exception):
        pass

    class KilledAtEpoch(EncodedCases):
        """The same cases; iterating epoch ``kill_at`` raises, like a killed process."""

        kill_at = 2
        calls = 0

        def batches(self, *a, **kw):  # type: ignore[override]
            type(self).calls += 1
            if type(self).calls == self.kill_at + 1:
                raise Killed
            return super().batches(*a, **kw)

    def weights(data: EncodedCases, ckpt: Path | None) -> dict[str, torch.Tensor]:
        m = build_model(tiny_config())
        m.load_state_dict(model.state_dict())
        train_model(m, data, None, TrainConfig(epochs=3, batch_size=4, progress=False, modality_dropout=0.3), ckpt)
        return m.state_dict()

    a, b = weights(data, None), weights(data, None)
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded: the same weights twice
    flaky = KilledAtEpoch(data.case_ids, data.sites, data.tensors)
    with pytest.raises(Killed):
        weights(flaky, tmp_path / "ck")
    assert (tmp_path / "ck" / "checkpoint.pt").is_file()
    resumed = weights(data, tmp_path / "ck")  # picks up after epoch 2
    assert all(torch.allclose(resumed[k].float(), a[k].float(), atol=1e-6) for k in a)


def test_note_reader_pretrained_on_the_corpus_reads_sex_and_loads_as_a_local_encoder(tmp_path: Path) -> None:
    from workbench.cohort.note_corpus import write_note_corpus
    from workbench.data.corpus import load_note_corpus
    from workbench.models import ModelConfig, TextEncoderConfig, trainable_parameters
    from workbench.runtime.encode import encode_note
    from workbench.train.pretrain_text import ReaderConfig, pretrain_note_reader, save_note_reader

    corpus = load_note_corpus(write_note_corpus(500, tmp_path / "corpus"))
    model = build_model(ModelConfig(modalities=("notes",)))
    torch.manual_seed(0)
    pretrain_note_reader(model, corpus, ReaderConfig(n_notes=500, epochs=2, progress=False))
    out = save_note_reader(model, tmp_path / "reader", "test reader")
    # held-out notes (another seed): sex is stated in nearly every note; a mean-pooled linear probe reads it
    held = load_note_corpus(write_note_corpus(200, tmp_path / "corpus", seed=12345))
    enc = model.text_encoder

    def pooled(texts: list[str]) -> torch.Tensor:
        rows = []
        with torch.no_grad():
            for t in texts:
                ids = torch.tensor([encode_note(t, model.tokenizer, 320)[0]])
                from workbench.models.tokenizer import numeric_values

                h = enc.hidden_states(ids, torch.ones_like(ids), numeric_values(model.tokenizer, ids))
                rows.append(h.mean(1)[0])
        return torch.stack(rows)

    from workbench.metrics import fit_logistic, predict_logistic

    w = fit_logistic(pooled(corpus.texts[:300]).numpy(), corpus.facts["female"][:300])
    acc = ((predict_logistic(w, pooled(held.texts).numpy()) > 0.5) == (held.facts["female"] > 0.5)).mean()
    assert acc > 0.85, acc
    fused = build_model(ModelConfig(text=TextEncoderConfig(path=str(out), freeze=True)))
    assert fused.text_encoder.value_proj.weight.requires_grad is False
    assert trainable_parameters(fused) < trainable_parameters(build_model(ModelConfig()))
    assert torch.equal(fused.text_encoder.encoder.get_input_embeddings().weight,
                       enc.encoder.get_input_embeddings().weight)
