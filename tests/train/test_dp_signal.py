"""The before-training check: a node too small for its epsilon is told so, from public numbers and its own n."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from federated.config import FedConfig
from federated.federate import dp_preflight
from federated.ledger import PrivacyLedger
from workbench.runtime.run import site_dirs_of
from workbench.train.dp_signal import SNR_FLOOR, best_case_snr, check_signal


def test_the_ratio_scales_as_its_formula_says() -> None:
    base = best_case_snr(100, 0.5, 32, 5, 10.0, 65)
    assert base == pytest.approx(math.sqrt(160) * 50 / (10 * math.sqrt(65)))
    assert best_case_snr(200, 0.5, 32, 5, 10.0, 65) == pytest.approx(2 * base)  # twice the cases
    assert best_case_snr(100, 0.5, 128, 5, 10.0, 65) == pytest.approx(2 * base)  # four times the steps
    assert best_case_snr(100, 0.5, 32, 5, 20.0, 65) == pytest.approx(base / 2)  # twice the noise
    assert best_case_snr(100, 0.5, 32, 5, 10.0, 260) == pytest.approx(base / 2)  # four times the weights


def _sigma(tmp_path: Path, epsilon: float, rounds: int) -> float:
    fed = FedConfig()
    return PrivacyLedger.open(tmp_path / f"l{epsilon}.json", "x", 8.0, 1e-5).plan_noise(
        "r", epsilon, rounds, fed.dp_sample_rate, fed.dp_steps)


def test_the_floor_separates_the_two_measured_anchors(tmp_path: Path) -> None:
    fed = FedConfig()  # the measured recipe: rate 0.5, 32 steps a round, the fused head's 65 weights
    # the full preset at epsilon 1 (1114 train cases over 4 sites, 10 rounds) learned: test AUROC 0.836
    full = check_signal("full", 1114 // 4, 1.0, fed.dp_sample_rate, fed.dp_steps, 10, _sigma(tmp_path, 1.0, 10), 65)
    # the small demo cohort at epsilon 3 (about 23 train cases a site, 5 rounds) ended below chance
    demo = check_signal("demo", 23, 3.0, fed.dp_sample_rate, fed.dp_steps, 5, _sigma(tmp_path, 3.0, 5), 65)
    assert full.learnable and full.snr > SNR_FLOOR * 1.5
    assert not demo.learnable and demo.snr < SNR_FLOOR / 2
    assert "too few for epsilon 3" in demo.message() and "demo" in demo.message()


def test_preflight_flags_every_tiny_site_and_writes_no_ledger(tiny_cohort: Path, tmp_path: Path) -> None:
    fed = FedConfig(cohort=str(tiny_cohort), dp=True, dp_epsilon=1.0, state_dir=str(tmp_path / "nodes"),
                    run_tag="preflight", text_encoder="", ct_encoder="")
    checks = dp_preflight(fed, site_dirs_of(tiny_cohort))
    assert sorted(checks) == [s.name for s in site_dirs_of(tiny_cohort)]
    for site, c in checks.items():
        assert c.site == site and 0 < c.n <= 8 and not c.learnable and c.dim == 65  # dp-train = head: the fused head
        assert c.snr == pytest.approx(best_case_snr(c.n, fed.dp_sample_rate, fed.dp_steps, fed.num_server_rounds,
                                                    c.noise_multiplier, c.dim))
    assert not (tmp_path / "nodes").exists() or not list((tmp_path / "nodes").rglob("privacy_ledger.json"))
