"""The explain benchmark's calibration per site: ECE of the risk a report states, per site, beside the true risk's
ECE on the same cases; on a hand-worked example, and on the tiny cohort's calibrated RUN, where the stated risk
must be the very number a report of each case states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.bench.explain_bench import _truths, calibration_per_site
from workbench.bench.site_calibration import reliability_figure, site_calibration
from workbench.data.case import load_cases
from workbench.explain.case import case_uncertainty
from workbench.metrics import ece
from workbench.runtime.encode import encode_cases
from workbench.runtime.inference import predict_logits
from workbench.runtime.predict import predict
from workbench.runtime.run import load_run, site_dirs_of
from workbench.runtime.run_uncertainty import RunUncertainty


def test_per_site_figures_by_hand() -> None:
    """Site a: labels 0, 1 stated 0.05, 0.95 (two bins, gap 0.05 each) -> 0.05; true risk 0.1, 0.9 -> 0.1.
    Site b: labels 1, 1, 0 all stated 0.5 (one bin: 0.5 vs 2/3) -> 1/6; true risk 0.7 each -> 0.7 - 2/3 = 1/30."""
    r = site_calibration(["a", "b", "a", "b", "b"], np.array([0, 1, 1, 1, 0]), np.array([0.05, 0.5, 0.95, 0.5, 0.5]),
                         np.array([0.1, 0.7, 0.9, 0.7, 0.7]))
    assert r["ece_per_site"] == pytest.approx({"a": 0.05, "b": 1 / 6})
    assert r["ece_true_risk_per_site"] == pytest.approx({"a": 0.1, "b": 1 / 30})
    assert r["n_test_per_site"] == {"a": 2, "b": 3} and r["malignant_test_per_site"] == {"a": 1, "b": 2}
    b = r["reliability_per_site"]["b"]["stated"]
    assert b["n"][5] == 3 and b["mean_p"][5] == pytest.approx(0.5) and b["observed"][5] == pytest.approx(2 / 3)
    assert sum(b["n"]) == 3 and r["reliability_per_site"]["a"]["true_risk"]["n"] == [0, 1] + [0] * 7 + [1]


def test_tiny_run_per_site_keys_state_the_reports_risk(tiny_calibrated_run: Path, tiny_cohort: Path,
                                                      tmp_path: Path) -> None:
    run = tiny_calibrated_run
    model, calibration = load_run(run)
    cases = [c for s in site_dirs_of(tiny_cohort) for c in load_cases(s) if c.split == "test"]
    test = encode_cases(cases, model.tokenizer, modalities=model.modalities, max_length=model.config.text.max_length,
                        progress=False)
    assert test.case_ids == [c.case_id for c in cases]  # every test case encoded (none refused)
    truths = _truths(tiny_cohort)
    result, assessments = calibration_per_site(RunUncertainty.load(run), run, predict_logits(model, test), test,
                                               truths)

    sites = sorted({c.site for c in cases})
    for key in ("ece_per_site", "ece_true_risk_per_site", "n_test_per_site", "reliability_per_site"):
        assert sorted(result[key]) == sites, key
    assert "ece" in result and result["n_test_per_site"] == {s: sum(c.site == s for c in cases) for s in sites}

    # the stated risk is the one a report of the case states: explain_case's assessment, computed per case
    for case, a in zip(cases, assessments, strict=True):
        pred = predict(model, case, calibration=calibration)
        reported, _ = case_uncertainty(run, case.site, case.case_id, model, pred, [])
        assert reported is not None and reported.probability == pytest.approx(a.probability, abs=1e-6), case.case_id

    # against the truth file, computed here without the benchmark
    y = np.array([truths[c.case_id]["label"] for c in cases], dtype=float)
    stated = np.array([a.probability for a in assessments])
    true_risk = np.array([truths[c.case_id]["risk"] for c in cases])
    for s in sites:
        m = np.array([c.site == s for c in cases])
        assert result["ece_per_site"][s] == pytest.approx(ece(y[m], stated[m]))
        assert result["ece_true_risk_per_site"][s] == pytest.approx(ece(y[m], true_risk[m]))
        bins = result["reliability_per_site"][s]["stated"]
        assert sum(bins["n"]) == m.sum()
        gap = sum(n * abs(p - o) for n, p, o in zip(bins["n"], bins["mean_p"], bins["observed"], strict=True) if n)
        assert gap / m.sum() == pytest.approx(result["ece_per_site"][s])
    assert result["ece"] == pytest.approx(ece(y, stated))

    png = reliability_figure(result, tmp_path / "explain_reliability_per_site.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 2 * im.height  # a row of one panel per site
