"""The stated risk may read the training cases (``stated_fit = "train+val+calib"``) only when the model's slope on
them agrees with the held-out cases' (workbench.runtime.run_uncertainty.fit_stated).

Known truth: the logit is the true log-odds. Held-out labels are drawn from it; training labels either from it too
(the model did not overfit: they enter the fit, which then counts every case) or from a three times sharper
function (a model that separates its own training cases better than new ones: they are left out, and the
warning says so with both temperatures). A DP run's node keeps to its held-out cases (measured on pooled runs
only). An unknown fit set is refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.runtime.calibration import Calibration
from workbench.runtime.run_uncertainty import SiteData, UncertaintyConfig, fit_uncertainty


def _site(rng: np.random.Generator, sharp_train: float, n_train: int = 600, n_val: int = 60,
          n_calib: int = 90) -> SiteData:
    z = {s: rng.normal(-1.0, 1.6, n) for s, n in (("train", n_train), ("val", n_val), ("calib", n_calib))}
    y = {s: (rng.random(len(v)) < 1 / (1 + np.exp(-(sharp_train if s == "train" else 1.0) * v))).astype(float)
         for s, v in z.items()}
    return SiteData(logits=z, fused={}, labels=y, case_ids={s: [] for s in z})


def _fit(sharp_train: float, config: UncertaintyConfig) -> tuple[object, list[str]]:
    rng = np.random.default_rng(5)
    data = {s: _site(rng, sharp_train) for s in ("hospital_a", "hospital_b")}
    unc, _ = fit_uncertainty(data, Calibration(), config)
    return unc, unc.warnings


def test_training_cases_enter_the_fit_when_the_model_did_not_overfit_them() -> None:
    pooled = UncertaintyConfig()  # the default: train+val+calib, one pooled fit
    unc, warnings = _fit(1.0, pooled)
    assert unc.pooled.stated.calibration.n == 2 * (600 + 60 + 90)
    assert not [w for w in warnings if "training cases" in w]
    assert unc.pooled.stated.calibration.temperature == pytest.approx(1.0, abs=0.15)
    own = UncertaintyConfig(stated_min_own=150)  # 750 cases a site: each its own fit
    unc, _ = _fit(1.0, own)
    assert unc.sites["hospital_a"].sources["stated"] == "site"
    assert unc.sites["hospital_a"].stated.calibration.n == 750
    held = UncertaintyConfig(stated_fit="val+calib")
    assert _fit(1.0, held)[0].pooled.stated.calibration.n == 2 * 150


def test_training_cases_the_model_separates_too_sharply_are_left_out_and_said() -> None:
    unc, warnings = _fit(3.0, UncertaintyConfig())
    assert unc.pooled.stated.calibration.n == 2 * 150  # the held-out cases alone
    note = [w for w in warnings if "training cases left out" in w]
    assert len(note) == 1 and note[0].startswith("pooled:") and "temperature 0.3" in note[0]


def test_an_unknown_fit_set_is_refused() -> None:
    with pytest.raises(WorkbenchError, match="unknown stated_fit 'train'"):
        _fit(1.0, UncertaintyConfig(stated_fit="train"))


def test_a_dp_runs_node_fits_its_held_out_cases_alone() -> None:
    unc, _ = _fit(1.0, UncertaintyConfig(pool=False))
    assert unc.pooled is None
    assert unc.sites["hospital_a"].sources["stated"] == "site"
    assert unc.sites["hospital_a"].stated.calibration.n == 60 + 90


def test_without_enough_held_out_cases_to_check_them_training_cases_stay_out() -> None:
    rng = np.random.default_rng(2)
    data = {"hospital_a": _site(rng, 1.0, n_train=400, n_val=3, n_calib=4)}
    unc, _ = fit_uncertainty(data, Calibration(), UncertaintyConfig(min_per_class=1))
    assert unc.pooled.stated.calibration.n == 7 and not unc.pooled.stated.boot
    assert any("too few to check" in w for w in unc.warnings)
