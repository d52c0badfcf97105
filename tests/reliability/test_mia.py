"""Membership inference (workbench.bench.reliability.mia): the attacks and the empirical epsilon against known
truth (a planted leak is found, no leak gives chance), and one real federated model per kind trained through the
nodes' own functions with the ledger's epsilon."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.bench.reliability import mia


def _models(leak: float, m: int = 8, n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits of ``m`` models on ``n`` cases whose members get ``leak`` more confidence in the true class, on top
    of a per-case difficulty the references share (what LiRA calibrates away)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(float)
    member = mia.memberships(n, m, seed)
    difficulty = rng.normal(0, 2.0, n)
    phi = difficulty + 0.3 * rng.normal(size=(m, n)) + leak * member
    return phi * (2 * labels - 1), labels, member


def test_memberships_are_halves_and_each_case_is_a_member_of_half_the_models() -> None:
    member = mia.memberships(101, 8, 0)
    assert (member.sum(axis=1) >= 50).all() and (member.sum(axis=1) <= 51).all()
    assert (member.sum(axis=0) == 4).all()  # complementary pairs


def test_a_planted_leak_is_found_and_lira_beats_the_loss_attack() -> None:
    logits, labels, member = _models(leak=0.5)
    s = mia.attack_scores(logits, labels, member)
    from workbench.metrics import auroc

    loss_auc = auroc(member.ravel().astype(float), s["loss"].ravel())
    lira_auc = auroc(member.ravel().astype(float), s["lira"].ravel())
    assert lira_auc > 0.85 and lira_auc > loss_auc + 0.1  # the difficulty hides the leak from the plain loss
    assert mia.empirical_epsilon(s["lira"].ravel(), member.ravel(), 1e-5) > 1.0
    assert mia.tpr_at_fpr(s["lira"].ravel(), member.ravel()) > 0.1


def test_no_leak_gives_chance_and_no_epsilon() -> None:
    logits, labels, member = _models(leak=0.0)
    figures = mia.variant_figures([{"logits": lg.tolist(), "member": m.tolist(), "epsilon": {}}
                                   for lg, m in zip(logits, member, strict=True)], labels, 1e-5)
    for attack in mia.ATTACKS:
        assert abs(figures[attack]["auc"] - 0.5) < 0.05
        lo, hi = figures[attack]["auc_ci95"]
        assert lo < 0.5 < hi
        assert figures[attack]["epsilon_lower_bound"] < 0.5


def test_a_dp_federation_spends_the_ledgers_epsilon_with_secret_randomness(tiny_cohort: Path, tmp_path: Path) -> None:
    import json

    from workbench.bench.reliability.fedsim import base_fed, node_states, train_federated

    data = node_states(tiny_cohort, tmp_path / "work", progress=False)
    assert len(data) == 3 and all(len(d) for d in data.values())
    sim = train_federated(base_fed(), data, epsilon=1.0, ledgers=tmp_path / "ledgers", rounds=2,
                          final_average=2, local_epochs=1, seed=0)
    model, eps = sim.model, sim.epsilon
    assert set(eps) == set(data) and all(0.5 < e <= 1.0 + 1e-6 for e in eps.values())
    for site in data:
        led = json.loads((tmp_path / "ledgers" / f"{site}.json").read_text())
        assert led["secure_randomness"] is True
        assert [e["round"] for e in led["entries"] if e["kind"] == "dp-sgd"] == [1, 2]
    from workbench.runtime.inference import predict_logits

    assert np.isfinite(predict_logits(model, data["hospital_a"])["logits"]).all()
