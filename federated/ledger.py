"""A node's privacy ledger: every DP-SGD release it ever made, and the epsilon that history adds up to.

The ledger is the node's memory across rounds, runs and restarts (DESIGN §7). It keeps what the privacy loss
depends on and nothing else: per round the noise multiplier, the Poisson sampling rate, the number of steps and
delta. Epsilon is never stored as truth; it is recomputed from the whole history with Opacus' RDP accountant
(``epsilon()``), and a test recomputes it with an independent accountant (Google's ``dp-accounting``).

Before a round the node asks ``plan_noise``: the smallest noise multiplier such that both this run's spend stays
within the run's target and the node's lifetime spend stays within its budget, assuming the run's remaining
rounds use the same noise. When no noise up to ``max_noise`` keeps the budget, the node refuses
(``BudgetExhausted``) and sends nothing. Writes are atomic (temporary file, then rename), so a crash leaves the
previous ledger intact, never a half-written one.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opacus.accountants.analysis import rdp as rdp_analysis

from workbench.errors import WorkbenchError

ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256]  # RDP orders (as Opacus)


class BudgetExhausted(WorkbenchError):
    """The node's next round would pass its privacy budget: it refuses to train."""


@dataclass
class LedgerEntry:
    run_id: str
    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    max_grad_norm: float = 1.0
    time: str = ""

    def release(self) -> tuple[float, float, int]:
        return self.noise_multiplier, self.sample_rate, self.steps


@functools.lru_cache(maxsize=4096)
def _rdp_one_step(sigma: float, q: float) -> tuple[float, ...]:
    """RDP of one subsampled-Gaussian step at every order; k steps compose to k times it (exactly)."""
    return tuple(rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=ORDERS))


def epsilon_of(releases: list[tuple[float, float, int]], delta: float) -> float:
    """RDP epsilon of a composition of subsampled-Gaussian releases (noise multiplier, sampling rate, steps)."""
    if not releases:
        return 0.0
    total = [0.0] * len(ORDERS)
    for sigma, q, steps in releases:
        if steps <= 0:
            continue
        r = _rdp_one_step(float(sigma), float(q))
        total = [a + steps * b for a, b in zip(total, r, strict=True)]
    eps, _ = rdp_analysis.get_privacy_spent(orders=ORDERS, rdp=total, delta=delta)
    return float(eps)


@dataclass
class PrivacyLedger:
    path: Path
    node: str  # a site name, never a patient identifier
    budget_epsilon: float = 8.0  # lifetime budget of this node's data
    delta: float = 1e-5
    entries: list[LedgerEntry] = field(default_factory=list)

    @classmethod
    def open(cls, path: str | Path, node: str, budget_epsilon: float, delta: float) -> PrivacyLedger:
        """Load the ledger at ``path`` (or start one). The budget may be raised or lowered by the hospital;
        delta is fixed for a ledger's life (the history composes at one delta)."""
        path = Path(path)
        if path.exists():
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise WorkbenchError(f"{path}: privacy ledger unreadable ({e}); refusing to train without it") from e
            if abs(float(d["delta"]) - delta) > 1e-15:
                raise WorkbenchError(f"{path}: ledger kept at delta {d['delta']}, run asks for {delta}; "
                                     "a node's history composes at one delta")
            return cls(path, d["node"], budget_epsilon, float(d["delta"]),
                       [LedgerEntry(**e) for e in d.get("entries", [])])
        return cls(path, node, budget_epsilon, delta)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        body = {"node": self.node, "delta": self.delta, "budget_epsilon": self.budget_epsilon,
                "epsilon": self.epsilon(), "entries": [asdict(e) for e in self.entries]}
        tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def releases(self, run_id: str | None = None) -> list[tuple[float, float, int]]:
        return [e.release() for e in self.entries if run_id is None or e.run_id == run_id]

    def epsilon(self, run_id: str | None = None) -> float:
        """Epsilon of the whole history (or of one run's rounds alone)."""
        return epsilon_of(self.releases(run_id), self.delta)

    def record(self, run_id: str, round_: int, noise_multiplier: float, sample_rate: float, steps: int,
               max_grad_norm: float) -> LedgerEntry:
        e = LedgerEntry(run_id, round_, noise_multiplier, sample_rate, steps, self.delta, max_grad_norm,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.entries.append(e)
        self.save()
        return e

    def plan_noise(self, run_id: str, run_target: float, rounds_left: int, sample_rate: float, steps: int,
                   max_noise: float = 50.0) -> float:
        """The smallest noise multiplier that keeps this run within ``run_target`` and the node within its
        budget, if the run's ``rounds_left`` rounds (this one included) all use it."""
        if rounds_left < 1:
            raise ValueError("rounds_left must be at least 1")
        planned = [(0.0, sample_rate, steps)] * rounds_left
        run_hist, all_hist = self.releases(run_id), self.releases()

        def fits(sigma: float) -> bool:
            future = [(sigma, q, s) for _, q, s in planned]
            return (epsilon_of(run_hist + future, self.delta) <= run_target
                    and epsilon_of(all_hist + future, self.delta) <= self.budget_epsilon)

        if not fits(max_noise):
            spent = self.epsilon()
            raise BudgetExhausted(
                f"node {self.node}: privacy budget epsilon {self.budget_epsilon:g} (delta {self.delta:g}) has "
                f"{max(self.budget_epsilon - spent, 0):.3f} left after {spent:.3f} spent; {rounds_left} more round(s) of "
                f"{steps} steps would pass it even at noise {max_noise:g}. Refusing to train.")
        lo, hi = 0.3, max_noise
        if fits(lo):
            return lo
        lo, hi = math.log(lo), math.log(hi)
        for _ in range(24):  # bisection on a monotone predicate: more noise, less epsilon (1e-6 relative)
            mid = (lo + hi) / 2
            if fits(math.exp(mid)):
                hi = mid
            else:
                lo = mid
        return math.exp(hi)

    def summary(self) -> dict[str, Any]:
        return {"node": self.node, "epsilon": self.epsilon(), "budget_epsilon": self.budget_epsilon,
                "delta": self.delta, "rounds": len(self.entries)}
