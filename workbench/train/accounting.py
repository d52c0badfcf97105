"""Epsilon of a history of Gaussian releases, computed in one place and checked by two other accountants.

Every privatised quantity a node releases is a Gaussian mechanism, possibly on a Poisson subsample: one DP-SGD
step is (noise multiplier sigma, sampling rate q, 1 step), ``k`` steps compose to (sigma, q, k), and a noised
count of sensitivity 1 is (sigma, 1.0, 1). A *release* is that triple. The privacy loss of a node is a function
of its releases alone, so the ledger keeps them and recomputes epsilon here whenever it is asked:

- ``epsilon_of``: Opacus' RDP analysis (the number the ledger plans with and reports);
- ``epsilons``: the same history under Opacus RDP, Google ``dp-accounting``'s RDP accountant and its PLD
  (privacy loss distribution) accountant. The ledger's plans keep all three within the target
  (``federated.ledger.PrivacyLedger.plan_noise``); ``workbench node ledger`` prints all three.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from opacus.accountants.analysis import rdp as rdp_analysis

ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256]  # RDP orders (as Opacus)
ACCOUNTANTS = ("opacus_rdp", "dp_accounting_rdp", "dp_accounting_pld")
PLD_DISCRETIZATION = 1e-3  # dp-accounting's PLD grid; its epsilon is an upper bound at any grid (pessimistic)

Release = tuple[float, float, int]  # (noise multiplier, sampling rate, steps)


@functools.lru_cache(maxsize=4096)
def _rdp_one_step(sigma: float, q: float) -> tuple[float, ...]:
    """RDP of one subsampled-Gaussian step at every order; k steps compose to k times it (exactly)."""
    return tuple(rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=ORDERS))


def epsilon_of(releases: Iterable[Release], delta: float) -> float:
    """Opacus RDP epsilon of a composition of Gaussian releases (noise multiplier, sampling rate, steps)."""
    total = [0.0] * len(ORDERS)
    any_release = False
    for sigma, q, steps in releases:
        if steps <= 0:
            continue
        any_release = True
        r = _rdp_one_step(float(sigma), float(q))
        total = [a + steps * b for a, b in zip(total, r, strict=True)]
    if not any_release:
        return 0.0
    eps, _ = rdp_analysis.get_privacy_spent(orders=ORDERS, rdp=total, delta=delta)
    return float(eps)


def _dp_event(releases: list[Release]):  # noqa: ANN202 - a dp_accounting.DpEvent
    import dp_accounting

    events = []
    for sigma, q, steps in releases:
        if steps <= 0:
            continue
        one = dp_accounting.GaussianDpEvent(float(sigma))
        if q < 1.0:
            one = dp_accounting.PoissonSampledDpEvent(float(q), one)
        events.append(dp_accounting.SelfComposedDpEvent(one, int(steps)))
    return dp_accounting.ComposedDpEvent(events)


def epsilon_dp_accounting(releases: Iterable[Release], delta: float, method: str = "rdp") -> float:
    """The same history under Google's ``dp-accounting`` (``rdp`` or ``pld``): independent implementations."""
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    rel = [r for r in releases if r[2] > 0]
    if not rel:
        return 0.0
    logging.getLogger("absl").setLevel(logging.ERROR)  # its RDP series warns per order it skips (huge sigma)
    if method == "rdp":
        acc = rdp_privacy_accountant.RdpAccountant()
    elif method == "pld":
        acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    else:
        raise ValueError(f"accountant method {method!r}: expected rdp or pld")
    acc.compose(_dp_event(rel))
    return float(acc.get_epsilon(delta))


def epsilons(releases: Iterable[Release], delta: float) -> dict[str, float]:
    """Epsilon under the three accountants: {opacus_rdp, dp_accounting_rdp, dp_accounting_pld}."""
    rel = list(releases)
    return {"opacus_rdp": epsilon_of(rel, delta), "dp_accounting_rdp": epsilon_dp_accounting(rel, delta, "rdp"),
            "dp_accounting_pld": epsilon_dp_accounting(rel, delta, "pld")}


__all__ = ["ACCOUNTANTS", "ORDERS", "Release", "epsilon_dp_accounting", "epsilon_of", "epsilons"]
