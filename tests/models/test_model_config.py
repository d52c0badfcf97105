"""Saved model configs: versioned, migrated in one place, free of machine paths; build_model leaves its input alone.

Two folders saved by older code are loaded through the migration and must answer as they did:
``tests/fixtures/fused_model`` (the benchmark's fused model, saved before the finding token and before config
versions) and ``tests/fixtures/model_v0_readers`` (a tiny fused model saved by the code of commit 95a4710 from a
pretrained note reader and CT reader whose folders were deleted after the save). The expected logits were
recorded with the code before config versions existed.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers.cases import random_cases, tiny_config
from workbench.errors import WorkbenchError
from workbench.models import (
    CONFIG_VERSION,
    CTEncoderConfig,
    ModelConfig,
    TextEncoderConfig,
    build_model,
    load_model,
    migrate_model_config,
    save_model,
)
from workbench.models.ct_encoder import CT_READER_WEIGHTS, CTEncoder
from workbench.models.tokenizer import load_tokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures"
FUSED_LOGITS = [-2.834495782852173, -2.892711877822876, -1.8077623844146729, -0.7898694276809692]
FUSED_GATE = [[0.17556840181350708, 0.8244315981864929], [0.16735084354877472, 0.8326491713523865], [1.0, 0.0],
              [0.0, 1.0]]
V0_READERS_LOGITS = [-0.5772743225097656, -0.5544688701629639, -0.09702684730291367, -0.5688987970352173,
                     -0.5822680592536926, -0.5733441710472107]


def full_size_batch(n: int = 4, seed: int = 7) -> dict[str, torch.Tensor]:
    """Seeded inputs at the default sizes (32^3 patches, 40 note tokens); case 2 has no note, case 3 no CT."""
    g = torch.Generator().manual_seed(seed)
    length = 40
    mask = torch.ones(n, length, dtype=torch.long)
    mask[1, 20:] = 0
    modality = torch.ones(n, 2, dtype=torch.bool)
    modality[2, 1] = False
    modality[3, 0] = False
    ids = torch.randint(10, 1900, (n, length), generator=g) * mask
    values = torch.where(ids % 7 == 0, torch.rand(n, length, generator=g), torch.zeros(n, length)) * mask
    return {"ct_patch": torch.rand(n, 1, 32, 32, 32, generator=g),
            "ct_context": torch.rand(n, 2, 32, 32, 32, generator=g), "ct_position": torch.rand(n, 3, generator=g),
            "note_ids": ids, "note_mask": mask, "note_values": values, "modality_mask": modality}


def tiny_batch() -> dict[str, torch.Tensor]:
    return random_cases(6).batch(torch.arange(6))


def logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_batch(batch).logits


def readers(tmp: Path) -> tuple[Path, Path]:
    """A pretrained note reader (save_pretrained, with its tokenizer) and a CT reader, in folders of their own."""
    from transformers import BertConfig, BertModel

    tok = load_tokenizer()
    note = tmp / "note_reader"
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=24), add_pooling_layer=False).save_pretrained(note)
    tok.save_pretrained(str(note))
    ct = tmp / "ct_reader"
    ct.mkdir()
    state = CTEncoder(tiny_config().ct, 32).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(ct / CT_READER_WEIGHTS))
    return note, ct


def config_from_readers(note: Path, ct: Path) -> ModelConfig:
    config = tiny_config()
    config.ct = CTEncoderConfig(**{**config.ct.__dict__, "path": str(ct), "freeze": True})
    config.text = TextEncoderConfig(path=str(note), max_length=24, freeze=True, dropout=0.0)
    return config


def test_the_benchmark_model_saved_before_versions_loads_and_answers_as_before() -> None:
    raw = json.loads((FIXTURES / "fused_model" / "config.json").read_text())
    assert "version" not in raw and "finding_token" not in raw["ct"]  # it is a version-0 folder
    model = load_model(FIXTURES / "fused_model")
    assert model.config.version == CONFIG_VERSION and model.config.ct.finding_token is False
    with torch.no_grad():
        out = model.forward_batch(full_size_batch())
    assert torch.allclose(out.logits, torch.tensor(FUSED_LOGITS), atol=1e-5)
    assert torch.allclose(out.gate, torch.tensor(FUSED_GATE), atol=1e-5)


def test_a_model_saved_by_the_code_of_95a4710_loads_without_its_reader_folders() -> None:
    raw = json.loads((FIXTURES / "model_v0_readers" / "config.json").read_text())
    assert not Path(raw["text"]["path"]).exists() and not Path(raw["ct"]["path"]).exists()
    model = load_model(FIXTURES / "model_v0_readers")
    assert model.config.ct.path is None and model.config.text.path is None
    assert torch.allclose(logits(model, tiny_batch()), torch.tensor(V0_READERS_LOGITS), atol=1e-5)


def test_resaving_an_old_model_writes_the_current_version_and_the_same_answers(tmp_path: Path) -> None:
    old = load_model(FIXTURES / "model_v0_readers")
    saved = json.loads((save_model(old, tmp_path / "model") / "config.json").read_text())
    assert saved["version"] == CONFIG_VERSION
    assert torch.equal(logits(load_model(tmp_path / "model"), tiny_batch()), logits(old, tiny_batch()))


def test_a_saved_config_holds_a_version_and_no_path_and_loads_without_the_readers(tmp_path: Path) -> None:
    note, ct = readers(tmp_path / "readers")
    torch.manual_seed(0)
    model = build_model(config_from_readers(note, ct)).eval()
    d = save_model(model, tmp_path / "model")
    text = (d / "config.json").read_text()
    assert "/" not in text and "\\" not in text, text
    assert json.loads(text)["version"] == CONFIG_VERSION
    shutil.rmtree(tmp_path / "readers")  # loading must not need them
    again = load_model(d)
    assert torch.equal(logits(again, tiny_batch()), logits(model, tiny_batch()))
    assert again.config.ct.freeze and again.config.text.freeze  # what is not a path survives


def test_build_model_leaves_its_config_unchanged(tmp_path: Path) -> None:
    note, ct = readers(tmp_path)
    for config in (tiny_config(), ModelConfig(modalities=("notes",)), config_from_readers(note, ct)):
        before = copy.deepcopy(config)
        model = build_model(config)
        assert config == before
        assert model.config is not config and model.config.text is not config.text
    resolved = build_model(config_from_readers(note, ct)).config  # the model's own copy is the resolved one
    assert resolved.tokenizer_path == str(note)
    assert build_model(tiny_config()).config.text.vocab_size == len(load_tokenizer())


def test_migration_writes_out_the_old_defaults_and_leaves_its_input_alone() -> None:
    old = {"ct": {"patch_size": 32, "path": "/somewhere/ct_reader"}, "text": {"path": "/somewhere/notes"},
           "fusion": {"d_model": 64}, "tokenizer_path": "/somewhere/notes"}
    before = copy.deepcopy(old)
    new = migrate_model_config(old)
    assert old == before
    assert new["version"] == CONFIG_VERSION and new["modalities"] == ["ct", "notes"]
    assert new["ct"]["finding_token"] is False and new["fusion"]["gate_sum"] is False  # as the old loader injected
    assert new["ct"]["path"] is None and new["text"]["path"] is None and new["tokenizer_path"] == "."
    current = tiny_config().to_saved_dict()
    assert migrate_model_config(current) == current  # the current version passes through as it is
    assert ModelConfig.from_dict(current).to_saved_dict() == current


@pytest.mark.parametrize("version", [CONFIG_VERSION + 1, "1", -1])
def test_a_config_from_a_newer_workbench_or_with_a_bad_version_is_refused_naming_the_file(tmp_path: Path,
                                                                                           version) -> None:
    d = tmp_path / "model"
    shutil.copytree(FIXTURES / "model_v0_readers", d)
    raw = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**raw, "version": version}))
    with pytest.raises(WorkbenchError, match=r"model[/\\]config\.json.*version") as e:
        load_model(d)
    if version == CONFIG_VERSION + 1:
        assert "newer" in str(e.value)


def test_a_config_with_an_unknown_field_is_refused_naming_the_file(tmp_path: Path) -> None:
    d = tmp_path / "model"
    shutil.copytree(FIXTURES / "model_v0_readers", d)
    raw = json.loads((d / "config.json").read_text())
    raw["fusion"]["warp_drive"] = True
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WorkbenchError, match=r"config\.json.*warp_drive"):
        load_model(d)


def test_a_runs_train_log_holds_the_saved_model_config_without_machine_paths(tiny_run: Path) -> None:
    log = json.loads((tiny_run / "train_log.json").read_text())
    saved = json.loads((tiny_run / "model" / "config.json").read_text())
    assert log["model_config"] == saved and saved["version"] == CONFIG_VERSION
    assert "/" not in json.dumps(log["model_config"]) + json.dumps(log["train_config"])
