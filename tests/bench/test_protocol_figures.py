"""The JSON contract of ``bench model`` and ``bench federated`` (issue 16), on made-up per-seed predictions: every
dict of figures has a ``_ci95`` sibling with the same keys, the README's differences are paired, and the means
are the plain means over seeds. (The trained runs themselves are checked by the benchmarks' own runs.)"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from workbench.bench import federated_bench, model_bench
from workbench.metrics import auroc, ece
from workbench.runtime.calibration import Calibration
from workbench.runtime.encode import EncodedCases

SITES = ("hospital_a", "hospital_b", "hospital_c")


def _cases(n: int = 240) -> tuple[EncodedCases, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.3).astype(np.float32)
    mask = torch.ones(n, 2, dtype=torch.bool)
    enc = EncodedCases([f"c{i}" for i in range(n)], [SITES[i % 3] for i in range(n)],
                       {"label": torch.from_numpy(y), "modality_mask": mask})
    return enc, y


def _logits(y: np.ndarray, strength: float, seed: int) -> list[float]:
    return (strength * y + np.random.default_rng(seed).normal(0, 1, len(y))).tolist()


def _ci_siblings_match(result: dict) -> list[str]:
    """Keys whose mean and ``_ci95`` disagree in shape (a dict's inner keys, or [low, high] for a scalar)."""
    bad = []
    for k, v in result.items():
        if not k.endswith("_ci95") or k.removesuffix("_ci95") not in result:
            continue
        mean = result[k.removesuffix("_ci95")]
        if isinstance(mean, dict):
            flat = {kk: vv for kk, vv in mean.items() if not isinstance(vv, (int, float)) or kk in v}
            if set(v) != set(flat):
                bad.append(k)
        elif not (isinstance(v, list) and len(v) == 2):
            bad.append(k)
    return bad


def test_model_figures_keys_and_means() -> None:
    enc, y = _cases()
    truths = [SimpleNamespace(female=bool(i % 2), prior_ct="none", prior_cancer=False, diameter_mm=6.0 + i % 20,
                              spiculated=bool(i % 3 == 0)) for i in range(len(y))]
    cal = {"temperature": 1.0, "logit_shift": 0.0, "bias": 0.0}
    runs = {}
    for s in range(2):
        runs[s] = {}
        for k, (name, strength) in enumerate((("fused", 2.0), ("ct_only", 1.2), ("notes_only", 0.8),
                                             ("late_fusion", 1.8))):
            r = {"logits": _logits(y, strength, 10 * s + k), "gate": [[0.5, 0.5]] * len(y), "calibration": cal}
            if name == "fused":
                for removed in ("notes", "ct"):
                    r[f"without_{removed}"] = {"case_ids": enc.case_ids, "logits": _logits(y, 1.0, 99 + s),
                                               "gate": [[1.0, 0.0] if removed == "notes" else [0.0, 1.0]] * len(y)}
                r["marked"] = {"case_ids": enc.case_ids, "logits": _logits(y, 1.9, 50 + s)}
            runs[s][name] = r
    refs = {"brock_oracle": y + 0.5, "bayes": y + 0.1, "ct_only_ceiling": y * 0.5, "notes_only_ceiling": y * 0.2}
    result = model_bench._figures(runs, enc, truths, refs)
    result.update(model_bench._marked_centre(runs, enc, enc, {}))
    assert result["n_seeds"] == 2
    assert set(result["auroc"]) == {"fused", "ct_only", "notes_only", "late_fusion", "brock_oracle", "bayes",
                                    "ct_only_ceiling", "notes_only_ceiling"}
    assert set(result["auroc_ci95"]) == set(result["auroc"])
    assert result["auroc"]["fused"] == pytest.approx(np.mean([auroc(y, runs[s]["fused"]["logits"]) for s in range(2)]))
    assert result["auroc_by_seed"]["fused"] == [pytest.approx(auroc(y, runs[s]["fused"]["logits"])) for s in range(2)]
    assert set(result["fusion_gain"]) == {"value", "ci95"} and result["fusion_gain"]["value"] > 0
    for k in ("ece", "ece_uncalibrated", "ece_true_risk", "auroc_without_notes", "auroc_without_ct",
              "auroc_marked_centre"):
        assert isinstance(result[k], float) and len(result[f"{k}_ci95"]) == 2, k
    assert set(result["per_site_auroc"]) == set(SITES) == set(result["per_site_auroc_ci95"])
    assert set(result["per_sex_auroc"]) == {"female", "male"} == set(result["per_sex_auroc_ci95"])
    sites = np.array(enc.sites)
    for site in SITES:  # per-site calibration beside the true risk's own ECE on the same cases (the floor)
        sel = sites == site
        stated = [runs[s]["fused"]["logits"] for s in range(2)]
        want = np.mean([ece(y[sel], Calibration.from_dict(cal).apply(np.asarray(v))[sel]) for v in stated])
        assert result["ece_per_site"][site] == pytest.approx(want)
        assert result["ece_true_risk_per_site"][site] == pytest.approx(ece(y[sel], refs["bayes"][sel]))
        assert result["ece_excess_per_site"][site] == pytest.approx(want - ece(y[sel], refs["bayes"][sel]))
    assert set(result["marked_minus_exact_centre"]) == {"value", "ci95"}
    assert result["gate_notes_max_when_removed"] == 0.0
    assert _ci_siblings_match(result) == []
    assert not [k for k in result if "test" in k]


def test_federated_figures_keys_and_paired_differences() -> None:
    enc, y = _cases()
    strengths = {"centralized": 2.0, "centralized_head": 1.8, "fedavg": 1.9, "fusion_only": 1.9,
                 "dp_eps1": 1.0, "dp_eps3": 1.4, "dp_eps8": 1.7}
    runs = {s: {k: {"logits": _logits(y, v, 7 * s + i)} for i, (k, v) in enumerate(strengths.items())}
            for s in range(3)}
    result = federated_bench._figures(runs, enc)
    assert result["n_seeds"] == 3
    assert set(result["auroc"]) == {"centralized", "fedavg", "fedavg_dp"} == set(result["auroc_ci95"])
    assert set(result["dp_curve"]) == {"1", "3", "8"} == set(result["dp_curve_ci95"])
    assert result["auroc"]["fedavg_dp"] == result["dp_curve"]["1"]
    assert result["dp_curve_min"]["1"] <= result["dp_curve"]["1"] <= result["dp_curve_max"]["1"]
    assert len(result["dp_curve_runs"]["8"]) == 3
    assert set(result["fedavg_minus_pooled"]) == {"value", "ci95"}
    want = np.mean([auroc(y, runs[s]["fedavg"]["logits"]) - auroc(y, runs[s]["centralized"]["logits"]) for s in range(3)])
    assert result["fedavg_minus_pooled"]["value"] == pytest.approx(want)
    assert set(result["dp_minus_fedavg"]) == {"1", "3", "8"}
    assert result["dp_minus_fedavg"]["1"]["ci95"][1] < 0  # epsilon 1 is clearly worse here, paired on the cases
    assert set(result["per_site_auroc"]) == set(SITES) == set(result["per_site_auroc_ci95"])
    assert set(result["per_site_auroc_dp_ci95"]["1"]) == set(SITES)
    for k in ("auroc_fusion_only_round", "auroc_centralized_dp_subset_no_dp"):
        assert isinstance(result[k], float) and len(result[f"{k}_ci95"]) == 2
    assert _ci_siblings_match(result) == []
    assert not [k for k in result if "test" in k]
