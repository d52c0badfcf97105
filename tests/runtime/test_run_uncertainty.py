"""A RUN's per-site uncertainty on data of known risk: each site's own thresholds where it can support them,
coverage per class, the refer flag, out-of-distribution detection, and a round trip through the RUN folder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.runtime.calibration import Calibration
from workbench.runtime.run_uncertainty import RunUncertainty, SiteData, UncertaintyConfig, fit_uncertainty
from workbench.runtime.uncertainty import CLASSES, class_coverage


def _site(rng: np.random.Generator, n: dict[str, int], centre: float = 0.0) -> SiteData:
    """Logits = true log-odds (so Platt is near identity); embeddings cluster around ``centre``."""
    d = SiteData({}, {}, {}, {})
    for split, k in n.items():
        z = rng.normal(-1.0, 2.0, k)
        d.logits[split] = z
        d.labels[split] = (rng.random(k) < 1 / (1 + np.exp(-z))).astype(float)
        d.fused[split] = rng.normal(centre, 1.0, (k, 6)) + np.array([3, 0, 0, 0, 0, 0])
        d.case_ids[split] = [f"{split}{i}" for i in range(k)]
    d.notes = {c: f"de-identified note {c}" for c in d.case_ids.get("train", [])}
    return d


def test_sites_use_their_own_calibrators_where_they_can_and_cover_each_class(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    data = {"big": _site(rng, {"train": 300, "val": 200, "calib": 600}),
            "small": _site(rng, {"train": 40, "val": 10, "calib": 30})}
    cfg = UncertaintyConfig(alpha=0.1, min_per_class=30, stated_min_own=150)  # a site's own stated fit allowed
    unc, indexes = fit_uncertainty(data, Calibration(), cfg)
    big, small = unc.sites["big"], unc.sites["small"]
    default, _ = fit_uncertainty(data, Calibration(), UncertaintyConfig(alpha=0.1, min_per_class=30))
    assert default.sites["big"].sources["stated"] == "pooled"  # the default: one pooled fit for every site
    assert big.sources == {"calibration": "site", "stated": "site", "conformal_benign": "site",
                           "conformal_malignant": "site", "venn_abers": "site"}
    assert small.sources["stated"] == "pooled" and small.stated is unc.pooled.stated
    assert small.sources["calibration"] == "pooled" and small.sources["conformal_malignant"] == "pooled"
    assert small.conformal.thresholds["malignant"] == unc.pooled.conformal.thresholds["malignant"]
    assert set(indexes) == {"big", "small"} and all(ix.site == s for s, ix in indexes.items())
    # fresh cases of the big site: each class covered at about 90%
    fresh = _site(np.random.default_rng(1), {"test": 4000})
    res = unc.assess("big", fresh.logits["test"], fresh.fused["test"], indexes["big"])
    sets = np.array([[c in r.prediction_set for c in ("benign", "malignant")] for r in res])
    for covered, n in class_coverage(sets, fresh.labels["test"]).values():
        assert 0.85 <= covered / n <= 0.95
    assert all(r.interval[0] <= r.probability <= r.interval[1] for r in res)
    va = replace(unc, config=replace(cfg, stated_risk="venn_abers")).assess("big", fresh.logits["test"])
    assert all(r.risk_method == "Venn-Abers point estimate" and r.interval[0] <= r.probability <= r.interval[1]
               for r in va)
    smooth = unc.assess("big", fresh.logits["test"])  # the default
    assert all(r.interval[0] <= r.probability <= r.interval[1] for r in smooth)
    assert all(r.interval_method == "95% bootstrap interval of the calibration" for r in smooth)
    order = np.argsort(fresh.logits["test"])
    assert (np.diff([smooth[i].probability for i in order]) > 0).all()  # every move of the score moves the risk
    # the stated risk's interval holds the true risk for most cases (the Venn-Abers one is not built to)
    truth = 1 / (1 + np.exp(-fresh.logits["test"]))
    held = np.mean([r.interval[0] <= t <= r.interval[1] for r, t in zip(smooth, truth, strict=True)])
    assert held > 0.8, held
    both = [r for r in res if len(r.prediction_set) == 2]
    assert both and all(r.refer and "both classes" in r.reasons[0] for r in both)
    single = [r for r in res if len(r.prediction_set) == 1 and not r.out_of_distribution]
    assert single and not any(r.refer for r in single)
    # the RUN folder keeps it
    unc.save(tmp_path)
    again = RunUncertainty.load(tmp_path)
    assert again.to_dict() == unc.to_dict()


def test_a_case_far_from_its_sites_training_cases_is_out_of_distribution_and_referred() -> None:
    rng = np.random.default_rng(2)
    data = {"a": _site(rng, {"train": 200, "val": 60, "calib": 200})}
    unc, indexes = fit_uncertainty(data, Calibration(), UncertaintyConfig(min_per_class=10))
    near = _site(np.random.default_rng(3), {"test": 300})
    res = unc.assess("a", near.logits["test"], near.fused["test"], indexes["a"])
    assert np.mean([r.out_of_distribution for r in res]) < 0.05  # the 99% quantile of calib distances
    far = -near.fused["test"][:5]  # the opposite direction: cosine distance near 2
    res = unc.assess("a", np.full(5, 3.0), far, indexes["a"])  # confident logits: only the distance refers
    assert all(r.out_of_distribution and r.refer and any("out of distribution" in m for m in r.reasons) for r in res)


def test_an_index_never_serves_another_site_and_an_unknown_site_says_pooled() -> None:
    rng = np.random.default_rng(4)
    data = {"a": _site(rng, {"train": 50, "val": 40, "calib": 80}), "b": _site(rng, {"train": 50, "val": 40, "calib": 80})}
    unc, indexes = fit_uncertainty(data, Calibration(), UncertaintyConfig(min_per_class=10))
    with pytest.raises(WorkbenchError, match="never serve another site"):
        unc.assess("a", np.zeros(1), np.ones((1, 6)), indexes["b"])
    r = unc.assess("elsewhere", np.zeros(1))[0]
    assert r.calibrated_by == "pooled" and r.out_of_distribution is None and "pooled ones used" in r.reasons[-1]


def test_a_calib_split_without_malignant_cases_puts_malignant_in_every_set_and_says_so() -> None:
    rng = np.random.default_rng(5)
    d = _site(rng, {"train": 20, "val": 10, "calib": 10})
    d.labels["calib"][:] = 0
    unc, indexes = fit_uncertainty({"a": d}, Calibration())
    assert any("no malignant case" in w for w in unc.warnings)
    res = unc.assess("a", np.array([-6.0, 0.0, 6.0]), d.fused["val"][:3], indexes["a"])
    assert all("malignant" in r.prediction_set for r in res) and res[0].refer and res[0].prediction_set == list(CLASSES)
    d.labels["calib"] = d.labels["calib"][:0]
    d.logits["calib"], d.fused["calib"] = d.logits["calib"][:0], d.fused["calib"][:0]
    with pytest.raises(WorkbenchError, match="no calib case"):
        fit_uncertainty({"a": d}, Calibration())


def test_a_site_with_a_few_dozen_val_cases_uses_the_pooled_fit_but_its_own_without_one() -> None:
    """Where a pooled calibration exists, a site needs ``min_val_own`` val cases to replace it (chosen on val:
    bench/results/calibration_sweep_val.jsonl); in a DP run (nothing pooled) ``min_val`` against the prior."""
    rng = np.random.default_rng(3)
    data = {s: _site(rng, {"train": 0, "val": 46, "calib": 70}) for s in ("a", "b")}
    cfg = UncertaintyConfig(min_val_per_class=5, min_val_own=150, min_val_own_per_class=30)
    pooled, _ = fit_uncertainty(data, Calibration(), cfg)
    assert {u.sources["calibration"] for u in pooled.sites.values()} == {"pooled"}
    alone, _ = fit_uncertainty(data, Calibration(), replace(cfg, pool=False))
    assert {u.sources["calibration"] for u in alone.sites.values()} == {"site"}
