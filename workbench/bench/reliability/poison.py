"""Poisoning: one node of four sends a scaled, a sign-flipped or a random update; how much AUROC the final model
loses under plain FedAvg and under the robust option, and whether the server's update screen flags the node.

The federations are the nodes' own training (``workbench.bench.reliability.fedsim``: ``federated.task``'s
functions, Flower's aggregation rules, the ServerApp's update screen) on the small cohort's four sites (every
case of each), every trainable weight travelling, no DP (the attacker's best case: nothing is clipped or
noised). The attacker lets its node train honestly, then replaces the update it sends by
``fedsim.poisoned_update``: ``boost`` times it (``scale``), minus ``boost`` times it (``sign_flip``) or Gaussian
noise of ``boost`` times its size (``random``). In a real Flower federation the same attacker is a client mod
(``poison_mod``; ``tests/reliability/test_poison.py`` runs it and finds the node flagged in the server's audit
log). The robust option is ``strategy = "normbounded"`` (``federated.robust``: FedAvg of the updates the server's
screen lets through, each clipped to the round's median norm); Flower's coordinate-wise trimmed mean
(``FedTrimmedAvg``, ``trim-beta`` 0.25: one node of four cut at each end) is measured beside it. AUROC is scored once on every case of a cohort no run chose anything on (the full
preset's test split), with the same frozen readers; each drop is paired (the same aggregator and seed, clean
against poisoned) and averaged over seeds, its 95% interval from a bootstrap over seeds and cases.
``poison_auroc_drop`` is the worst attack's mean drop per aggregator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.reliability.fedsim import (
    ATTACKS,
    Attacker,
    base_fed,
    device_name,
    load_states,
    node_states,
    poisoned_update,
    train_federated,
)
from workbench.jsonout import write_json
from workbench.metrics import auroc
from workbench.runtime.encode import EncodedCases

# robust: the workbench's robust option (``strategy = "normbounded"``); trimmed_mean: Flower's FedTrimmedAvg rule,
# measured beside it (it does not meet the bound with four nodes: federated/robust.py says why)
AGGREGATORS = {"fedavg": "mean", "robust": "normbounded", "trimmed_mean": "trimmed"}


@dataclass(frozen=True)
class PoisonConfig:
    site: str = "hospital_d"  # the poisoned node
    attacks: tuple[str, ...] = ATTACKS
    boost: float = 10.0
    rounds: int = 6
    final_average: int = 3
    local_epochs: int = 1
    seeds: int = 3


QUICK = PoisonConfig(attacks=("scale",), rounds=2, final_average=1, seeds=1)


def poison_mod(cohort: str | Path, site: str, kind: str, boost: float,
               seed: int = 0) -> Callable[[Any, Any, Callable[[Any, Any], Any]], Any]:
    """A Flower client mod that turns the node training ``site`` of ``cohort`` into the attacker (module
    docstring); every other node's replies pass untouched."""
    from federated.robust import map_update
    from workbench.runtime.run import site_dirs_of

    if kind not in ATTACKS:
        raise ValueError(f"attack {kind!r}: expected one of {ATTACKS}")
    attacker = Attacker(site, kind, boost)
    sites = [s.name for s in site_dirs_of(cohort)]

    def mod(msg: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        reply = call_next(msg, context)
        pid = int(context.node_config.get("partition-id", -1))
        if (msg.metadata.message_type != "train" or reply.has_error() or not 0 <= pid < len(sites)
                or sites[pid] != site or "arrays" not in reply.content.array_records):
            return reply
        rng = np.random.default_rng([seed, pid])
        reply.content.array_records["arrays"] = map_update(
            msg.content.array_records["arrays"], reply.content.array_records["arrays"],
            lambda d: poisoned_update(attacker.kind, d, attacker.boost, rng))
        return reply

    return mod


def training_data(work: Path, progress: bool) -> dict[str, EncodedCases]:
    """Every case of the small cohort's four sites with the shipped frozen readers' states."""
    from workbench.bench.common import cached_cohort

    return node_states(cached_cohort("small", 0, progress=progress), work, progress)


def evaluation_data(work: Path, progress: bool) -> EncodedCases:
    """Every case of the full preset's test split (another seed's patients), the same readers' states."""
    from workbench.bench.serve_bench import full_test_split

    per_site = node_states(full_test_split(progress), work, progress)
    return concat([per_site[s] for s in sorted(per_site)])


def concat(parts: list[EncodedCases]) -> EncodedCases:
    import torch

    keys = parts[0].tensors.keys()
    return EncodedCases([c for p in parts for c in p.case_ids], [s for p in parts for s in p.sites],
                        {k: torch.cat([p.tensors[k] for p in parts]) for k in keys},
                        [r for p in parts for r in p.refused])


def plan(cfg: PoisonConfig) -> list[tuple[str, str | None, int]]:
    return [(agg, attack, seed) for seed in range(cfg.seeds) for agg in AGGREGATORS for attack in (None, *cfg.attacks)]


def run_name(agg: str, attack: str | None, seed: int) -> str:
    return f"{agg}-{attack or 'clean'}-seed{seed}"


def one_run(agg: str, attack: str | None, seed: int, cfg: PoisonConfig, data: dict[str, EncodedCases],
            evald: EncodedCases, work: Path, device: str = "cpu") -> dict[str, Any]:
    """One federation, kept (``<name>.json``: its logits on the evaluation cases and each round's screen)."""
    from workbench.runtime.inference import predict_logits

    f = work / f"{run_name(agg, attack, seed)}.json"
    if f.is_file():
        return json.loads(f.read_text())
    sim = train_federated(base_fed(), data, rounds=cfg.rounds, final_average=cfg.final_average,
                          local_epochs=cfg.local_epochs, seed=seed, device=device, aggregator=AGGREGATORS[agg],
                          attacker=Attacker(cfg.site, attack, cfg.boost) if attack else None)
    rec = {"name": run_name(agg, attack, seed), "seed": seed, "case_ids": evald.case_ids,
           "logits": predict_logits(sim.model, evald)["logits"].tolist(), "screens": sim.screens,
           "trained_on": device_name(device)}
    f.parent.mkdir(parents=True, exist_ok=True)
    write_json(f, rec)
    return rec


def _drop_ci(y: np.ndarray, clean: list[np.ndarray], bad: list[np.ndarray], reps: int = 500) -> list[float]:
    """95% interval of the seeds' mean paired drop: a bootstrap over seeds and over cases."""
    rng = np.random.default_rng(5)
    vals = []
    for _ in range(reps):
        seeds = rng.integers(0, len(clean), len(clean))
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].mean() < 1:
            vals.append(float(np.mean([auroc(y[i], clean[s][i]) - auroc(y[i], bad[s][i]) for s in seeds])))
    return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))]


def run(*, quick: bool, work: Path, progress: bool) -> dict[str, Any]:
    cfg = QUICK if quick else PoisonConfig()
    return poison_audit(cfg, work, work / ("quick" if quick else "full"), progress)


def poison_audit(cfg: PoisonConfig, states_work: Path, work: Path, progress: bool,
                 device: str = "cpu") -> dict[str, Any]:
    """Every aggregator clean and under every attack, for each seed (module docstring); runs already kept (e.g.
    trained on a GPU machine: ``bench/reliability_poison_gpu.sh``) are reloaded."""
    from tqdm import tqdm

    data, evald = training_data(states_work, progress), evaluation_data(states_work, progress)
    y = evald.labels.astype(float)
    runs = {(agg, attack, seed): one_run(agg, attack, seed, cfg, data, evald, work, device)
            for agg, attack, seed in tqdm(plan(cfg), desc="poisoning runs", disable=not progress)}
    figures: dict[str, Any] = {}
    for agg in AGGREGATORS:
        clean = [np.array(runs[agg, None, s]["logits"]) for s in range(cfg.seeds)]
        per_attack: dict[str, dict[str, Any]] = {}
        for attack in cfg.attacks:
            bad = [np.array(runs[agg, attack, s]["logits"]) for s in range(cfg.seeds)]
            screens = [r for s in range(cfg.seeds) for r in runs[agg, attack, s]["screens"]]
            per_attack[attack] = {
                "auroc": float(np.mean([auroc(y, b) for b in bad])),
                "auroc_drop": float(np.mean([auroc(y, c) - auroc(y, b) for c, b in zip(clean, bad, strict=True)])),
                "auroc_drop_ci95": _drop_ci(y, clean, bad),
                "rounds_poisoned_node_flagged": f"{sum(bool(r[cfg.site]['anomalous']) for r in screens)}/{len(screens)}",
                "honest_updates_flagged": sum(bool(v["anomalous"]) for r in screens for k, v in r.items()
                                              if k != cfg.site)}
        clean_screens = [r for s in range(cfg.seeds) for r in runs[agg, None, s]["screens"]]
        figures[agg] = {"clean_auroc": float(np.mean([auroc(y, c) for c in clean])), "attacks": per_attack,
                        "honest_updates_flagged_in_clean_runs":
                            f"{sum(bool(v['anomalous']) for r in clean_screens for v in r.values())}/"
                            f"{sum(len(r) for r in clean_screens)}",
                        "worst_attack": max(per_attack, key=lambda a: float(per_attack[a]["auroc_drop"]))}
    keys = {"poison_auroc_drop": {agg: figures[agg]["attacks"][figures[agg]["worst_attack"]]["auroc_drop"]
                                  for agg in AGGREGATORS}}  # fedavg and robust, the trimmed mean beside them
    trained_on = sorted({r["trained_on"] for r in runs.values()})
    return {"keys": keys, "aggregators": figures, "config": asdict(cfg), "train_cohort": "small-seed0 (every case)",
            "evaluation": "full-seed0-test-split (every case)", "evaluation_cases": len(y), "runs": len(runs),
            "trained_on": trained_on,
            "robust_option": "normbounded: FedAvg of the updates the server's screen lets through, each clipped to "
                             "the round's median update norm (federated/robust.py); trimmed_mean: Flower's "
                             "FedTrimmedAvg rule, trim-beta 0.25"}


def main(argv: list[str] | None = None) -> int:
    """Train some of the runs elsewhere (a GPU machine: ``bench/reliability_poison_gpu.sh``) from two states files
    (``node_states``: the small cohort's, the full test split's); their JSON files go back into the work folder."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m workbench.bench.reliability.poison")
    p.add_argument("train_states")
    p.add_argument("eval_states")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, required=True, help="train this seed's runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--aggregators", default=",".join(AGGREGATORS), help="train only these (comma-separated)")
    a = p.parse_args(argv)
    cfg = PoisonConfig()
    data = load_states(a.train_states)
    evald = concat([d for _, d in sorted(load_states(a.eval_states).items())])
    for agg, attack, seed in plan(cfg):
        if seed == a.seed and agg in a.aggregators.split(","):
            one_run(agg, attack, seed, cfg, data, evald, Path(a.out), a.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
