"""The privacy ledger: planned noise keeps run target and lifetime budget, refusal, restart, independent accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federated.ledger import BudgetExhausted, PrivacyLedger, epsilon_of
from tests.helpers.privacy import independent_epsilon
from workbench.train.accounting import epsilon_dp_accounting


def test_planned_noise_spends_the_run_target_and_never_more(tmp_path) -> None:
    led = PrivacyLedger.open(tmp_path / "l.json", "hospital_a", budget_epsilon=8.0, delta=1e-5)
    rounds = 3
    for r in range(1, rounds + 1):
        sigma = led.plan_noise("run1", 1.0, rounds - r + 1, 0.1, 10)
        led.record("run1", r, sigma, 0.1, 10, 1.0)
    assert led.epsilon("run1") <= 1.0 + 1e-9
    assert led.epsilon("run1") > 0.97  # the target is used, not wasted
    assert led.epsilon("run1") == pytest.approx(independent_epsilon(led.releases(), 1e-5), rel=0.01)


def test_lifetime_budget_caps_a_second_run_and_then_refuses(tmp_path) -> None:
    path = tmp_path / "l.json"
    led = PrivacyLedger.open(path, "hospital_b", budget_epsilon=2.0, delta=1e-5)
    for r in (1, 2):
        led.record("run1", r, led.plan_noise("run1", 1.5, 3 - r, 0.2, 20), 0.2, 20, 1.0)
    # a restart: the ledger is read back from disk and keeps accumulating
    led2 = PrivacyLedger.open(path, "hospital_b", budget_epsilon=2.0, delta=1e-5)
    assert [e.release() for e in led2.entries] == led.releases()
    before = led2.epsilon()
    sigma = led2.plan_noise("run2", 1.5, 1, 0.2, 20)  # the budget, not the run target, binds
    led2.record("run2", 1, sigma, 0.2, 20, 1.0)
    assert before < led2.epsilon() <= 2.0 + 1e-9
    assert led2.epsilon("run2") < 1.5
    led2.record("run2", 2, 0.5, 0.5, 200, 1.0)  # an outside spend that exhausts it
    with pytest.raises(BudgetExhausted, match="hospital_b: privacy budget epsilon 2"):
        led2.plan_noise("run3", 1.0, 1, 0.2, 20)


def test_ledger_refuses_a_different_delta_and_a_corrupt_file(tmp_path) -> None:
    path = tmp_path / "l.json"
    led = PrivacyLedger.open(path, "hospital_c", 8.0, 1e-5)
    led.record("r", 1, 1.0, 0.1, 10, 1.0)
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="delta"):
        PrivacyLedger.open(path, "hospital_c", 8.0, 1e-6)
    path.write_text("{not json")
    with pytest.raises(WorkbenchError, match="unreadable"):
        PrivacyLedger.open(path, "hospital_c", 8.0, 1e-5)


def test_epsilon_matches_the_independent_accountant_over_mixed_histories() -> None:
    hist = [(1.3, 0.05, 100), (2.0, 0.1, 40), (0.9, 0.02, 500)]
    assert epsilon_of(hist, 1e-5) == pytest.approx(independent_epsilon(hist, 1e-5), rel=0.01)


@pytest.mark.parametrize("target,rate,steps,rounds", [(1.0, 0.5, 32, 10), (3.0, 0.5, 32, 5), (8.0, 0.1, 10, 3)])
def test_planned_noise_keeps_epsilon_within_the_target_under_all_three_accountants(tmp_path, target, rate, steps,
                                                                                   rounds) -> None:
    """The benchmark's and demo's plans (and a third): after a count release and every round at the planned noise,
    Opacus RDP, dp-accounting RDP and dp-accounting PLD each put the run at or under its target."""
    led = PrivacyLedger.open(tmp_path / "l.json", "hospital_a", budget_epsilon=target, delta=1e-5)
    led.count_release("run", 280, 20.0)
    for r in range(1, rounds + 1):
        led.record("run", r, led.plan_noise("run", target, rounds - r + 1, rate, steps), rate, steps, 1.0)
    eps = led.epsilons("run")
    assert set(eps) == {"opacus_rdp", "dp_accounting_rdp", "dp_accounting_pld"}
    assert max(eps.values()) <= target + 1e-9, eps
    assert eps["opacus_rdp"] > 0.95 * target  # the target is used, not wasted
    assert eps["dp_accounting_pld"] <= eps["dp_accounting_rdp"] + 1e-6  # PLD is the tighter bound


def test_the_count_release_is_noised_once_per_run_recorded_and_charged(tmp_path) -> None:
    led = PrivacyLedger.open(tmp_path / "l.json", "hospital_a", budget_epsilon=8.0, delta=1e-5)
    a = led.count_release("run1", 280, 20.0)
    assert led.count_release("run1", 280, 20.0) == a  # reused within the run: post-processing
    b = led.count_release("run2", 280, 20.0)
    assert a != b and abs(a - 280) < 150 and abs(b - 280) < 150
    counts = [e for e in led.entries if e.kind == "count"]
    assert [(e.noise_multiplier, e.sample_rate, e.steps, e.secure_randomness) for e in counts] == [(20.0, 1.0, 1, True)] * 2
    assert led.epsilon() == pytest.approx(epsilon_dp_accounting([(20.0, 1.0, 1)] * 2, 1e-5, "rdp"), rel=0.01)
    seeded = [PrivacyLedger.open(tmp_path / f"s{i}.json", "x", 8.0, 1e-5).count_release("r", 280, 20.0, seed=5)
              for i in range(2)]
    assert seeded[0] == seeded[1]  # the test mode replays


def test_seeded_releases_say_so_and_old_entries_read_as_seeded(tmp_path) -> None:
    path = tmp_path / "l.json"
    led = PrivacyLedger.open(path, "hospital_a", 8.0, 1e-5)
    led.record("r", 1, 1.0, 0.1, 10, 1.0, secure_randomness=True, engine="vmap-head")
    assert led.secure() and json.loads(path.read_text())["secure_randomness"] is True
    led.record("r", 2, 1.0, 0.1, 10, 1.0, secure_randomness=False)
    assert not led.secure() and json.loads(path.read_text())["entries"][1]["secure_randomness"] is False
    body = json.loads(path.read_text())  # a ledger from before the field existed: its draws were seeded
    for e in body["entries"]:
        del e["secure_randomness"]
    path.write_text(json.dumps(body))
    assert not PrivacyLedger.open(path, "hospital_a", 8.0, 1e-5).secure()


def test_node_ledger_command_prints_three_accountants_and_flags_seeded_runs(tmp_path, capsys) -> None:
    from workbench.cli import main

    node = tmp_path / "hospital_a"
    led = PrivacyLedger.open(node / "privacy_ledger.json", "hospital_a", 8.0, 1e-5)
    led.count_release("secure-run", 280, 20.0)
    led.record("secure-run", 1, 2.0, 0.1, 10, 1.0, secure_randomness=True, engine="vmap-head")
    assert main(["node", "ledger", str(node)]) == 0
    out = capsys.readouterr().out
    assert "Opacus RDP" in out and "dp-acc. RDP" in out and "dp-acc. PLD" in out and "not private" not in out
    led.record("debug-run", 1, 2.0, 0.1, 10, 1.0, secure_randomness=False)
    assert main(["node", "ledger", str(node), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["runs"]["secure-run"]["secure_randomness"] and not d["runs"]["debug-run"]["secure_randomness"]
    assert d["accountants"]["opacus_rdp"] == pytest.approx(led.epsilon())
    assert main(["node", "ledger", str(node)]) == 0
    assert "not private: seeded randomness" in capsys.readouterr().out
    assert main(["node", "ledger", str(tmp_path / "nowhere")]) == 2  # a clear error, exit 2


def test_a_noise_plan_is_remembered_by_its_public_numbers(tmp_path, monkeypatch) -> None:
    """The same history and request give the same plan from memory or disk; another history computes its own."""
    import federated.ledger as L

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(L, "_PLANS", {})
    a = PrivacyLedger.open(tmp_path / "a.json", "site_a", 1.0, 1e-5)
    b = PrivacyLedger.open(tmp_path / "b.json", "site_b", 1.0, 1e-5)
    first = a.plan_noise("run", 1.0, 3, 0.5, 8)

    def no_more(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(L.PrivacyLedger, "_plan_noise", no_more)
    L._PLANS.clear()  # a new node process: the disk answers
    assert b.plan_noise("run", 1.0, 3, 0.5, 8) == first
    assert list((tmp_path / "cache" / "noise_plans").glob("*.json"))
    b.record("run", 1, first, 0.5, 8, 1.0)
    with pytest.raises(AssertionError, match="computed again"):  # another history: its own question
        b.plan_noise("run", 1.0, 2, 0.5, 8)


def test_a_node_folder_finds_its_ledger_in_its_site_state_folder(tmp_path: Path) -> None:
    """`workbench node ledger NODE_DIR`: the node keeps its state in NODE_DIR/<site folder>/ (node_config_arg)."""
    from federated.ledger import PrivacyLedger, read_ledger

    led = PrivacyLedger.open(tmp_path / "node" / "hospital_a" / "privacy_ledger.json", "hospital_a", 8.0, 1e-5)
    led.record("run1", 1, 1.5, 0.5, 32, 1.0)
    assert read_ledger(tmp_path / "node").summary()["rounds"] == 1
