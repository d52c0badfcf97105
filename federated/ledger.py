"""A node's privacy ledger: every DP-SGD release it ever made, and the epsilon that history adds up to.

The ledger is the node's memory across rounds, runs and restarts (docs/architecture.md §7). It keeps what the privacy loss
depends on and nothing else: per release the noise multiplier, the Poisson sampling rate, the number of steps,
delta, what kind of release it was (``dp-sgd``: a round of DP-SGD; ``count``: the node's number of training cases
plus Gaussian noise, released once per run so the server can weigh nodes and the node can scale its update by a
public number), and whether its randomness was secret (``secure_randomness``: OS entropy; false for the seeded
test mode, which is not private). Epsilon is never stored as truth; it is recomputed from the whole history by
the one accountant function (``workbench.train.accounting.epsilon_of``, Opacus RDP); ``epsilons()`` gives the
same history under Google's ``dp-accounting`` RDP and PLD accountants too.

Before a round the node asks ``plan_noise``: the smallest noise multiplier such that both this run's spend stays
within the run's target and the node's lifetime spend stays within its budget, assuming the run's remaining
rounds use the same noise, under all three accountants. When no noise up to ``max_noise`` keeps the budget, the
node refuses (``BudgetExhausted``) and sends nothing. Writes are atomic (temporary file, then rename), so a crash
leaves the previous ledger intact, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from workbench.errors import WorkbenchError
from workbench.jsonout import write_json
from workbench.runtime.privacy import NOT_PRIVATE
from workbench.train.accounting import ORDERS, epsilon_of, epsilons
from workbench.train.dp_random import dp_generator


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
    max_grad_norm: float = 1.0  # the clip (dp-sgd) or the sensitivity (count: 1 case)
    time: str = ""
    kind: str = "dp-sgd"  # dp-sgd | count
    # False for seeded draws and noise (tests, debugging): not private. Entries written before this field existed
    # used seeded generators, so a missing field reads as False.
    secure_randomness: bool = False
    value: float | None = None  # a count release: the released (noised) number, public once sent
    engine: str = ""  # dp-sgd: which per-sample-gradient engine ran

    def release(self) -> tuple[float, float, int]:
        return self.noise_multiplier, self.sample_rate, self.steps

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LedgerEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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
            d = _read(path)
            if abs(float(d["delta"]) - delta) > 1e-15:
                raise WorkbenchError(f"{path}: ledger kept at delta {d['delta']}, run asks for {delta}; "
                                     "a node's history composes at one delta")
            return cls(path, d["node"], budget_epsilon, float(d["delta"]),
                       [LedgerEntry.from_dict(e) for e in d.get("entries", [])])
        return cls(path, node, budget_epsilon, delta)

    def save(self) -> None:
        body = {"node": self.node, "delta": self.delta, "budget_epsilon": self.budget_epsilon,
                "epsilon": self.epsilon(), "secure_randomness": self.secure(),
                "entries": [asdict(e) for e in self.entries]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, body)

    def secure(self, run_id: str | None = None) -> bool:
        """True when every release (of ``run_id``, or ever) drew from OS entropy; seeded ones void the epsilon."""
        return all(e.secure_randomness for e in self.entries if run_id is None or e.run_id == run_id)

    def epsilons(self, run_id: str | None = None) -> dict[str, float]:
        """Epsilon of the history (or one run) under Opacus RDP, dp-accounting RDP and dp-accounting PLD."""
        return epsilons(self.releases(run_id), self.delta)

    def count_release(self, run_id: str, n: int, noise: float, seed: int | None = None) -> float:
        """The node's case count for this run, released once through the Gaussian mechanism (sensitivity 1:
        adding or removing one case moves it by 1) and recorded before it leaves; later rounds of the run reuse
        the recorded value (post-processing, free). ``seed``: the replayable test mode (not private)."""
        for e in self.entries:
            if e.run_id == run_id and e.kind == "count" and e.value is not None:
                return float(e.value)
        if noise <= 0:
            raise WorkbenchError(f"node {self.node}: dp-count-noise must be positive (got {noise})")
        if not self._fits([(float(noise), 1.0, 1)], None, None, strict=True):
            raise self._exhausted("a noised case count")
        g = dp_generator(seed)
        value = float(n) + float(noise) * float(torch.randn(1, generator=g).item())
        self.entries.append(LedgerEntry(run_id, 0, float(noise), 1.0, 1, self.delta, 1.0, _now(), "count",
                                        seed is None, value))
        self.save()
        return value

    def releases(self, run_id: str | None = None) -> list[tuple[float, float, int]]:
        return [e.release() for e in self.entries if run_id is None or e.run_id == run_id]

    def epsilon(self, run_id: str | None = None) -> float:
        """Epsilon of the whole history (or of one run's rounds alone)."""
        return epsilon_of(self.releases(run_id), self.delta)

    def record(self, run_id: str, round_: int, noise_multiplier: float, sample_rate: float, steps: int,
               max_grad_norm: float, *, secure_randomness: bool = True, engine: str = "") -> LedgerEntry:
        e = LedgerEntry(run_id, round_, noise_multiplier, sample_rate, steps, self.delta, max_grad_norm, _now(),
                        "dp-sgd", secure_randomness, None, engine)
        self.entries.append(e)
        self.save()
        return e

    def _fits(self, future: list[tuple[float, float, int]], run_id: str | None, run_target: float | None,
              strict: bool = False) -> bool:
        """Would ``future`` keep the run within ``run_target`` and the node within its budget? Opacus RDP only,
        or (``strict``) every accountant of ``epsilons``."""
        def within(hist: list[tuple[float, float, int]], limit: float) -> bool:
            if not strict:
                return epsilon_of(hist, self.delta) <= limit
            return max(epsilons(hist, self.delta).values()) <= limit

        ok = within(self.releases() + future, self.budget_epsilon)
        if ok and run_target is not None and run_id is not None:
            ok = within(self.releases(run_id) + future, run_target)
        return ok

    def _exhausted(self, what: str) -> BudgetExhausted:
        spent = self.epsilon()
        return BudgetExhausted(
            f"node {self.node}: privacy budget epsilon {self.budget_epsilon:g} (delta {self.delta:g}) has "
            f"{max(self.budget_epsilon - spent, 0):.3f} left after {spent:.3f} spent; {what} would pass it. "
            "Refusing to train.")

    def plan_noise(self, run_id: str, run_target: float, rounds_left: int, sample_rate: float, steps: int,
                   max_noise: float = 50.0) -> float:
        """The smallest noise multiplier that keeps this run within ``run_target`` and the node within its
        budget, if the run's ``rounds_left`` rounds (this one included) all use it: found by bisection on Opacus
        RDP, then raised until dp-accounting's RDP and PLD accountants agree it fits too.

        The answer is a deterministic function of public numbers (the history's noise multipliers, rates and
        steps, the budget, delta and this request), and the PLD checks take seconds, so it is remembered by those
        numbers (``_remembered_plan``): a node asks the same question every round of every run with the same history,
        and the nodes of a simulation share one machine. No record and no count value enters the key."""
        if rounds_left < 1:
            raise ValueError("rounds_left must be at least 1")
        key = json.dumps([self.releases(), self.releases(run_id), self.budget_epsilon, self.delta, run_target,
                          rounds_left, sample_rate, steps, max_noise, list(ORDERS)])
        known = _remembered_plan(key)
        if known is not None:
            return known
        sigma = self._plan_noise(run_id, run_target, rounds_left, sample_rate, steps, max_noise)
        _remember_plan(key, sigma)
        return sigma

    def _plan_noise(self, run_id: str, run_target: float, rounds_left: int, sample_rate: float, steps: int,
                    max_noise: float) -> float:

        def future(sigma: float) -> list[tuple[float, float, int]]:
            return [(sigma, sample_rate, steps)] * rounds_left

        if not self._fits(future(max_noise), run_id, run_target):
            if self._fits(future(max_noise), None, None):  # the node's budget has room: the run's target has not
                raise BudgetExhausted(
                    f"node {self.node}: this run ({run_id}) has spent epsilon {self.epsilon(run_id):.3f} of its "
                    f"target {run_target:g}; {rounds_left} more round(s) of {steps} steps even at noise "
                    f"{max_noise:g} would pass it (a round redone after a lost reply spends the run's budget "
                    "too). Refusing to train in this run.")
            raise self._exhausted(f"{rounds_left} more round(s) of {steps} steps even at noise {max_noise:g}")
        lo, hi = 0.3, max_noise
        if self._fits(future(lo), run_id, run_target):
            sigma = lo
        else:
            lo, hi = math.log(lo), math.log(hi)
            for _ in range(24):  # bisection on a monotone predicate: more noise, less epsilon (1e-6 relative)
                mid = (lo + hi) / 2
                if self._fits(future(math.exp(mid)), run_id, run_target):
                    hi = mid
                else:
                    lo = mid
            sigma = math.exp(hi)
        for _ in range(200):  # the other accountants: each is an upper bound; a plan must satisfy all of them
            if self._fits(future(sigma), run_id, run_target, strict=True):
                return sigma
            sigma *= 1.002
        raise BudgetExhausted(f"node {self.node}: no noise multiplier up to {sigma:.3g} keeps the run within "
                              f"epsilon {run_target:g} under every accountant. Refusing to train.")

    def summary(self) -> dict[str, Any]:
        return {"node": self.node, "epsilon": self.epsilon(), "budget_epsilon": self.budget_epsilon,
                "delta": self.delta, "rounds": sum(e.kind == "dp-sgd" for e in self.entries),
                "releases": len(self.entries), "secure_randomness": self.secure()}


def read_ledger(node_dir: str | Path) -> PrivacyLedger:
    """The ledger a node keeps in ``node_dir`` (``<state-dir>/<site>``, or the ledger file itself), read only."""
    node_dir = Path(node_dir)
    path = node_dir if node_dir.is_file() else node_dir / "privacy_ledger.json"
    below = sorted(node_dir.glob("*/privacy_ledger.json")) if node_dir.is_dir() and not path.is_file() else []
    if len(below) == 1:  # a node folder (`workbench node init`): its state sits in NODE_DIR/<site folder>/
        path = below[0]
    if not path.is_file():
        raise WorkbenchError(f"{node_dir}: no privacy_ledger.json (a node writes it when it first trains under DP)")
    d = _read(path)
    return PrivacyLedger(path, d["node"], float(d.get("budget_epsilon", 8.0)), float(d["delta"]),
                         [LedgerEntry.from_dict(e) for e in d.get("entries", [])])


def ledger_table(led: PrivacyLedger) -> str:
    """What ``workbench node ledger`` prints: every release, then epsilon per run and lifetime under the three
    accountants, and a loud line when any release used seeded randomness."""
    out = [f"node {led.node}: budget epsilon {led.budget_epsilon:g}, delta {led.delta:g}, "
           f"{len(led.entries)} release(s)", "",
           f"{'run':<24} {'round':>5} {'kind':<7} {'noise':>8} {'rate':>6} {'steps':>5} {'secure':>6}  engine"]
    for e in led.entries:
        out.append(f"{e.run_id[:24]:<24} {e.round:>5} {e.kind:<7} {e.noise_multiplier:>8.3f} {e.sample_rate:>6.3f} "
                   f"{e.steps:>5} {'yes' if e.secure_randomness else 'NO':>6}  {e.engine}")
    out += ["", f"{'epsilon':<24} {'Opacus RDP':>11} {'dp-acc. RDP':>11} {'dp-acc. PLD':>11}"]
    runs = list(dict.fromkeys(e.run_id for e in led.entries))
    for name, run in [*((f"run {r}"[:24], r) for r in runs), ("lifetime", None)]:
        eps = led.epsilons(run)
        flag = "" if led.secure(run) else f"  {NOT_PRIVATE}"
        out.append(f"{name:<24} {eps['opacus_rdp']:>11.4f} {eps['dp_accounting_rdp']:>11.4f} "
                   f"{eps['dp_accounting_pld']:>11.4f}{flag}")
    left = led.budget_epsilon - led.epsilon()
    out.append(f"\nbudget left (Opacus RDP): {max(left, 0):.4f} of {led.budget_epsilon:g}")
    if not led.secure():
        out.append(f"WARNING: {NOT_PRIVATE}: some releases can be replayed by anyone who knows the config; "
                   "their epsilon guarantees nothing")
    return "\n".join(out)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise WorkbenchError(f"{path}: privacy ledger unreadable ({e}); refusing to train without it") from e


_PLANS: dict[str, float] = {}


def _plan_path(key: str) -> Path:
    from workbench.data.cache import default_cache_dir

    return Path(default_cache_dir()).parent / "noise_plans" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _remembered_plan(key: str) -> float | None:
    """A noise plan answered before, in this process or in ``$WORKBENCH_CACHE/noise_plans/``; None if none."""
    if key not in _PLANS:
        try:
            d = json.loads(_plan_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if d.get("key") != key:  # a digest collision or a foreign file: compute
            return None
        _PLANS[key] = float(d["noise_multiplier"])
    return _PLANS[key]


def _remember_plan(key: str, sigma: float) -> None:
    """Keep the answer in memory and on disk (one small JSON per question, written atomically)."""
    from workbench.atomic import atomic_write

    _PLANS[key] = sigma
    path = _plan_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            Path(tmp).write_text(json.dumps({"key": key, "noise_multiplier": sigma}), encoding="utf-8")
    except OSError:  # a read-only cache only costs the next node the computation
        pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = ["ORDERS", "BudgetExhausted", "LedgerEntry", "PrivacyLedger", "epsilon_of", "ledger_table", "read_ledger"]
