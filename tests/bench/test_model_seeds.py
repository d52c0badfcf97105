"""bench model's training half from a work folder alone (workbench/bench/model_seeds.py): what a GPU machine runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.bench.model_seeds import main, parse_seeds, train_seeds
from workbench.errors import WorkbenchError
from workbench.metrics import auroc
from workbench.models.model import load_model
from workbench.runtime.inference import predict_logits


def test_a_seed_trains_scores_every_evaluation_case_and_resumes(work: Path) -> None:
    runs = train_seeds(work, [0], progress=False, only=["fused"])
    fused = runs[0]["fused"]
    from workbench.runtime.encode import EncodedCases

    exact = EncodedCases.load(work / "eval-tiny" / "encoded.pt")
    assert fused["case_ids"] == exact.case_ids  # every evaluation case, in order
    assert len(fused["logits"]) == len(exact) and np.isfinite(fused["logits"]).all()
    assert {"without_ct", "without_notes"} <= set(fused)  # the missing-modality ablations
    assert fused["train_device"] == "cpu" and fused["epochs_run"] == 2
    # the saved model gives the logits written (a copy brought back from another machine is scored the same)
    model = load_model(work / "seed0" / "fused" / "model")
    np.testing.assert_allclose(predict_logits(model, exact)["logits"], fused["logits"], atol=1e-5)
    assert 0.0 <= auroc(exact.labels, np.asarray(fused["logits"])) <= 1.0
    trained = work / "seed0" / "fused" / "trained.json"
    before = trained.stat().st_mtime_ns
    again = train_seeds(work, [0], progress=False, only=["fused"])  # resumes: nothing is trained twice
    assert trained.stat().st_mtime_ns == before
    assert again[0]["fused"]["logits"] == fused["logits"]
    assert json.loads(trained.read_text())["calibration"] == fused["calibration"]


def test_a_seed_follows_its_number(work: Path) -> None:
    a = train_seeds(work, [1], progress=False, only=["ct_only"])[1]["ct_only"]
    b = train_seeds(work, [2], progress=False, only=["ct_only"])[2]["ct_only"]
    assert a["seed"] == 1 and b["seed"] == 2
    assert a["logits"] != b["logits"]  # init and data order follow the seed


def test_a_folder_without_a_bundle_is_refused_with_its_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(WorkbenchError, match="bundle.json"):
        train_seeds(tmp_path, [0])
    assert main(["train", str(tmp_path), "--seeds", "0"]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_seed_lists() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2") == [0, 2]
    with pytest.raises(WorkbenchError, match="--seeds"):
        parse_seeds("a-b")


def test_training_needs_no_cohort_layer() -> None:
    """The GPU machine gets the folder, not the cohorts: the module must not pull the generator in."""
    code = ("import sys, workbench.bench.model_seeds; "
            "print(sorted(m for m in sys.modules if m.startswith(('workbench.cohort', 'workbench.bench.common'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_packed_copy_trains_elsewhere_and_is_scored_back_home(work: Path, tmp_path: Path) -> None:
    """What the GPU route does: pack, train the copy (no evaluation set there), bring the seed back, score it
    here from the readers' states; the scores are the saved model's own on the raw evaluation cases."""
    from workbench.bench.model_seeds import OWN_WEIGHTS, export_trained, import_trained, pack
    from workbench.runtime.encode import EncodedCases

    packed = pack(work, tmp_path / "packed")
    train = EncodedCases.load(packed / "encoded_train.pt")
    assert "ct_patch" not in train.tensors and train.tensors["ct_patch_states"].shape[1:] == (64, 64)
    assert sum(f.stat().st_size for f in packed.rglob("*.pt")) < 0.25 * sum(
        (work / f"encoded_{s}.pt").stat().st_size for s in ("train", "val"))
    away = train_seeds(packed, [7], progress=False, only=["fused"])[7]["fused"]
    assert "logits" not in away and not list(packed.glob("seed7/fused/eval-*.json"))  # nothing to score there
    back = export_trained(packed, tmp_path / "back")  # what comes back: the model's own weights, not the readers
    own = back / "seed7" / "fused" / OWN_WEIGHTS
    assert own.stat().st_size < 0.5 * (packed / "seed7" / "fused" / "model" / "model.safetensors").stat().st_size
    assert len(import_trained(back, work)) == 1
    assert (work / "seed7" / "fused" / "model" / "model.safetensors").read_bytes() == \
        (packed / "seed7" / "fused" / "model" / "model.safetensors").read_bytes()
    home = train_seeds(work, [7], progress=False, only=["fused"])[7]["fused"]
    assert home["calibration"] == away["calibration"]  # trained there, not again here
    exact = EncodedCases.load(work / "eval-tiny" / "encoded.pt")
    raw = predict_logits(load_model(work / "seed7" / "fused" / "model"), exact)["logits"]
    np.testing.assert_allclose(home["logits"], raw, atol=1e-4)


def test_a_model_rebuilt_from_other_readers_is_refused(work: Path, tmp_path: Path) -> None:
    from workbench.bench.model_seeds import export_trained, import_trained

    train_seeds(work, [0], progress=False, only=["fused"])
    back = export_trained(work, tmp_path / "back")
    other = tmp_path / "other"
    shutil.copytree(work, other, ignore=shutil.ignore_patterns("seed*", "eval-*"))
    reader = other / "ct_reader" / "ct_reader.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(str(reader))
    k = sorted(state)[0]
    state[k] = state[k] + 1.0
    save_file(state, str(reader))
    with pytest.raises(WorkbenchError, match="differs from the one trained"):
        import_trained(back, other)


def test_weights_a_variant_never_trains_still_come_back(work: Path, tmp_path: Path) -> None:
    """Late fusion leaves the gate at its random init: such tensors travel, or the rebuilt model would differ."""
    from workbench.bench.model_seeds import export_trained, import_trained

    train_seeds(work, [3], progress=False, only=["late_fusion"])
    back = export_trained(work, tmp_path / "back")
    import torch

    torch.manual_seed(12345)  # whatever the generator's state here
    assert import_trained(back, work)
