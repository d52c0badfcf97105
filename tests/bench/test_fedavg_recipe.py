"""The FedAvg recipe choice reads val only and follows its stated rule (workbench.bench.fedavg_recipe).

``score`` is checked on cases whose truth is known: a model whose logit is the true log-odds scores the true
risk's AUROC on the val rows (not the calib rows) and, through the production calibration, is within 0.06 of the
true risk at every site; a doubled logit (the same ranking) scores the same; ``choose`` takes the better mean val AUROC; an unknown recipe or an empty sweep
is refused with a message.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from workbench.bench.calibration_sweep import Cases
from workbench.bench.fedavg_recipe import RECIPES, choose, recipe_run, score
from workbench.errors import WorkbenchError
from workbench.metrics import auroc


def _cases(scale: float) -> tuple[Cases, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 800
    sites = np.array(["a", "b"] * (n // 2))
    z = rng.normal(-0.8, 1.5, n)
    risk = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < risk).astype(float)
    noise = {s: rng.normal(0, 0.3, n) for s in range(3)}
    return Cases(sites, y, risk, {s: scale * z + noise[s] for s in range(3)}), np.arange(n) % 4 != 0


def test_score_reads_the_val_rows_and_measures_calibration_against_the_truth() -> None:
    good_cases, is_val = _cases(1.0)
    good = score(good_cases, is_val, partitions=1)
    expected = np.mean([auroc(good_cases.labels[is_val], z[is_val]) for z in good_cases.logits.values()])
    assert good["val_auroc"] == pytest.approx(expected)
    assert good["n_val"] == int(is_val.sum()) and good["n_val_calib"] == len(is_val)
    assert set(good["ece_vs_true_risk_per_site"]) == {"a", "b"}
    assert good["worst_site_ece_vs_true_risk"] < 0.06
    bad = score(_cases(2.0)[0], is_val, partitions=1)  # the same ranking, so the same AUROC
    assert bad["val_auroc"] == pytest.approx(good["val_auroc"], abs=0.02)


def test_choice_is_the_better_mean_val_auroc_and_bad_requests_are_refused() -> None:
    records = [{"recipe": "aux_weight_0.3", "val_auroc": 0.861}, {"recipe": "aux_weight_1", "val_auroc": 0.858}]
    assert choose(records)["recipe"] == "aux_weight_0.3"
    with pytest.raises(WorkbenchError, match="nothing trained"):
        choose([])
    with pytest.raises(WorkbenchError, match="unknown"):
        recipe_run(SimpleNamespace(), "lr_1", 0)
    assert set(RECIPES) == {"aux_weight_0.3", "aux_weight_1"}
