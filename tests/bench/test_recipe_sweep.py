"""bench model's recipe sweep (workbench/bench/recipe_sweep.py): recipes are trained and chosen on val only, and
the chosen models are the ones bench model scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from workbench.bench import recipe_sweep
from workbench.bench.model_seeds import train_seeds
from workbench.bench.recipe_sweep import RECIPES, adopt, applies, choose, main, records, train_recipe
from workbench.errors import WorkbenchError
from workbench.models.model import load_model
from workbench.runtime.encode import EncodedCases
from workbench.runtime.inference import predict_logits


def test_single_modality_models_skip_recipes_that_only_touch_fusion() -> None:
    assert applies("aux_weight_1", "fused") and applies("aux_weight_1", "late_fusion")
    assert not applies("aux_weight_1", "ct_only") and not applies("modality_dropout_0.4", "notes_only")
    assert applies("lr_3e-4", "ct_only") and applies("base", "notes_only")


def test_the_choice_is_the_best_mean_over_complete_seeds() -> None:
    recs = [{"variant": "fused", "recipe": "base", "seeds": [0, 1], "val_auroc_mean": 0.80},
            {"variant": "fused", "recipe": "lr_3e-4", "seeds": [0, 1], "val_auroc_mean": 0.82},
            {"variant": "fused", "recipe": "patience_20", "seeds": [0], "val_auroc_mean": 0.95},  # one seed only
            {"variant": "ct_only", "recipe": "base", "seeds": [0, 1], "val_auroc_mean": 0.70}]
    assert choose(recs) == {"fused": "lr_3e-4", "ct_only": "base"}


def test_recipes_train_on_val_only_and_the_chosen_one_is_what_bench_model_scores(work: Path, tmp_path: Path) -> None:
    w = tmp_path / "w"
    shutil.copytree(work, w, ignore=shutil.ignore_patterns("seed*", "sweep"))
    for recipe in ("base", "lr_3e-4"):
        train_recipe(w, recipe, [0], progress=False, only=["fused"])
    assert not list((w / "sweep").rglob("eval-*.json"))  # nothing scored on the evaluation cohort
    cfg = json.loads((w / "sweep" / "lr_3e-4" / "seed0" / "fused" / "trained.json").read_text())["train_config"]
    assert cfg["lr"] == RECIPES["lr_3e-4"]["lr"] and cfg["seed"] == 0
    recs = records(w)
    assert {r["recipe"] for r in recs} == {"base", "lr_3e-4"}
    for r in recs:  # what the sweep writes: val figures and nothing named test
        assert r["split"] == "val" and "test" not in json.dumps(r).lower()
        assert r["val_auroc_mean"] is None or 0.0 <= r["val_auroc_mean"] <= 1.0  # None: the tiny val has one class
        assert r["seeds"] == [0]
    chosen = choose(recs)
    out = tmp_path / "results"
    assert main(["choose", str(w), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "recipe_sweep_val.jsonl").read_text().splitlines()]
    assert [x["recipe"] for x in lines if x["chosen"]] == [chosen["fused"]]
    adopt(w, chosen)
    src = w / "sweep" / chosen["fused"] / "seed0" / "fused" / "model" / "model.safetensors"
    assert (w / "seed0" / "fused" / "model" / "model.safetensors").read_bytes() == src.read_bytes()
    scored = train_seeds(w, [0], progress=False, only=["fused"])[0]["fused"]  # scores the adopted model, no training
    assert scored["train_config"]["lr"] == (RECIPES[chosen["fused"]].get("lr", 1e-3))
    exact = EncodedCases.load(w / "eval-tiny" / "encoded.pt")
    raw = predict_logits(load_model(w / "seed0" / "fused" / "model"), exact)["logits"]
    np.testing.assert_allclose(scored["logits"], raw, atol=1e-4)


def test_the_chosen_recipe_trains_again_from_scratch(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench model run afresh trains each variant with its chosen recipe (CHOSEN), the same model as the sweep's."""
    w = tmp_path / "w"
    shutil.copytree(work, w, ignore=shutil.ignore_patterns("seed*", "sweep"))
    monkeypatch.setitem(recipe_sweep.CHOSEN, "fused", "lr_3e-4")
    fresh = train_seeds(w, [0], progress=False, only=["fused"])[0]["fused"]
    train_recipe(w, "lr_3e-4", [0], progress=False, only=["fused"])
    swept = json.loads((w / "sweep" / "lr_3e-4" / "seed0" / "fused" / "trained.json").read_text())
    assert fresh["train_config"] == swept["train_config"]
    assert fresh["calibration"] == swept["calibration"]
    weights = "model/model.safetensors"
    assert (w / "seed0" / "fused" / weights).read_bytes() == (w / "sweep/lr_3e-4/seed0/fused" / weights).read_bytes()


def test_an_unknown_recipe_or_an_empty_sweep_is_refused(work: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(WorkbenchError, match="not one of"):
        train_recipe(work, "no_such_recipe", [0])
    assert main(["choose", str(tmp_path)]) == 2
    assert "no trained recipe" in capsys.readouterr().err
