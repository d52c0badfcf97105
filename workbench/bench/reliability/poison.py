"""Poisoning: one node of four sends a scaled, a sign-flipped or a random update; how much AUROC the final model
loses under plain FedAvg and under the robust option, and whether the server's update screen flags the node.

Every run is a real Flower simulation (``federated.federate.run_federated``: the same ServerApp and ClientApp
as ``workbench federate``) on the small cohort's four sites, every trainable weight travelling, no DP (the
attacker's best case: nothing is clipped or noised). The attacker is a Flower client mod around one node
(``poison_mod``): it lets the node train honestly, then replaces the update it sends (weights back minus weights
received) with ``boost`` times it (``scale``), minus ``boost`` times it (``sign_flip``) or Gaussian noise of
``boost`` times its size (``random``): a model-replacement attacker who wants to dominate a four-node mean.
The robust option is the coordinate-wise trimmed mean (``strategy = "fedtrimmedavg"``, ``trim-beta`` 0.25: one
node trimmed at each end). AUROC is scored once on every case of a cohort no run chose anything on (the full
preset's test split, ``serve_bench.full_test_split``), with the same frozen readers; each drop is paired (the
same aggregator and seed, clean against poisoned), its 95% interval from a bootstrap over those cases.
``poison_auroc_drop`` is the worst attack's mean drop per aggregator.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from workbench.jsonout import write_json
from workbench.metrics import auroc
from workbench.runtime.encode import EncodedCases

ATTACKS = ("scale", "sign_flip", "random")
AGGREGATORS = {"fedavg": {"strategy": "fedavg"}, "robust": {"strategy": "fedtrimmedavg", "trim_beta": 0.25}}


@dataclass(frozen=True)
class PoisonConfig:
    site: str = "hospital_d"  # the poisoned node
    attacks: tuple[str, ...] = ATTACKS
    boost: float = 10.0
    rounds: int = 6
    seeds: int = 2


QUICK = PoisonConfig(attacks=("scale",), rounds=2, seeds=1)


def poison_mod(cohort: str | Path, site: str, kind: str, boost: float,
               seed: int = 0) -> Callable[[Any, Any, Callable[[Any, Any], Any]], Any]:
    """A Flower client mod that turns the node training ``site`` of ``cohort`` into the attacker (module
    docstring); every other node's replies pass untouched."""
    from flwr.app import Array, ArrayRecord

    from workbench.runtime.run import site_dirs_of

    if kind not in ATTACKS:
        raise ValueError(f"attack {kind!r}: expected one of {ATTACKS}")
    sites = [s.name for s in site_dirs_of(cohort)]

    def mod(msg: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        reply = call_next(msg, context)
        pid = int(context.node_config.get("partition-id", -1))
        if (msg.metadata.message_type != "train" or reply.has_error() or not 0 <= pid < len(sites)
                or sites[pid] != site or "arrays" not in reply.content.array_records):
            return reply
        sent, back = msg.content.array_records["arrays"], reply.content.array_records["arrays"]
        rng = np.random.default_rng([seed, pid])
        out = {}
        for key in back.keys():
            new = back[key].numpy()
            if key not in sent.keys() or new.dtype.kind != "f":
                out[key] = Array(new)
                continue
            old = sent[key].numpy()
            delta = new.astype(np.float64) - old
            if kind == "scale":
                delta = boost * delta
            elif kind == "sign_flip":
                delta = -boost * delta
            else:
                delta = rng.normal(0.0, boost * float(np.sqrt(np.mean(delta ** 2))) + 1e-12, size=delta.shape)
            out[key] = Array((old + delta).astype(new.dtype))
        reply.content.array_records["arrays"] = ArrayRecord(out)
        return reply

    return mod


def _cohort(quick: bool, progress: bool) -> Path:
    from workbench.bench.common import cached_cohort

    return cached_cohort("small", 0, progress=progress)


def _encoded_dir(cohort: Path, work: Path, progress: bool) -> Path:
    """The train split encoded once (``encoded-dir``): each simulated node takes its rows and keeps its frozen
    readers' states beside it, so no run reads DICOM again."""
    import os

    from workbench.data.cache import PreprocessCache, default_cache_dir
    from workbench.models.model import ModelConfig, build_model
    from workbench.runtime.encode import encode_cases
    from workbench.runtime.run import cases_of

    folder = work / f"encoded-{cohort.name}"
    f = folder / "encoded_train.pt"
    if not f.is_file():
        tokenizer = build_model(ModelConfig(modalities=("notes",))).tokenizer
        data = encode_cases(cases_of([cohort], ["train"]), tokenizer, cache=PreprocessCache(default_cache_dir()),
                            progress=progress, desc="encode train split", workers=os.cpu_count() or 1)
        folder.mkdir(parents=True, exist_ok=True)
        data.save(f)
    return folder


def _evaluation(work: Path, progress: bool) -> EncodedCases:
    """Every case of the full preset's test split with the shipped frozen readers' states."""
    from workbench.bench.reliability.mia import node_states
    from workbench.bench.serve_bench import full_test_split

    per_site = node_states(full_test_split(progress), work, progress)
    ids = sorted(per_site)
    return _concat([per_site[s] for s in ids])


def _concat(parts: list[EncodedCases]) -> EncodedCases:
    import torch

    keys = parts[0].tensors.keys()
    return EncodedCases([c for p in parts for c in p.case_ids], [s for p in parts for s in p.sites],
                        {k: torch.cat([p.tensors[k] for p in parts]) for k in keys},
                        [r for p in parts for r in p.refused])


def _one_run(name: str, cohort: Path, encoded: Path, agg: dict[str, Any], seed: int, rounds: int,
             mod: Any, work: Path, evald: EncodedCases) -> dict[str, Any]:
    """One federation, kept (``<name>.json``: its logits on the evaluation cases and each round's screen)."""
    from federated.config import FedConfig
    from federated.federate import run_federated
    from workbench.models.model import load_model
    from workbench.models.shipped import shipped
    from workbench.runtime.inference import predict_logits

    f = work / f"{name}.json"
    if f.is_file():
        return json.loads(f.read_text())
    run = work / name
    shutil.rmtree(run, ignore_errors=True)  # a killed run starts again whole
    fed = FedConfig(cohort=str(cohort), text_encoder=str(shipped("note_reader")), ct_encoder=str(shipped("ct_reader")),
                    init_model=str(shipped("fusion_init")), encoded_dir=str(encoded), num_server_rounds=rounds,
                    fraction_evaluate=0.0, seed=seed, state_dir=str(run / "nodes"), run_tag=name, progress=False)
    fed = replace(fed, **agg)
    run_federated(fed, run / "run", calibrate=False, client_mods=[mod] if mod is not None else None)
    rounds_rec = json.loads((run / "run" / "rounds.json").read_text())["rounds"]
    screen = [{"round": r["round"], **{n["site"]: {k: n.get(k) for k in ("update_norm", "norm_ratio",
                                                                             "cosine_to_others", "anomalous")}
                                       for n in r["nodes"] if "site" in n}} for r in rounds_rec]
    logits = predict_logits(load_model(run / "run" / "model"), evald)["logits"]
    rec = {"name": name, "seed": seed, "logits": logits.tolist(), "screen": screen,
           "server_audit": str((run / "run" / "server_audit.jsonl").relative_to(work))}
    write_json(f, rec)
    return rec


def _paired_drop(y: np.ndarray, clean: np.ndarray, bad: np.ndarray, reps: int = 500) -> tuple[float, list[float]]:
    rng = np.random.default_rng(5)
    drop = auroc(y, clean) - auroc(y, bad)
    vals = []
    for _ in range(reps):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].mean() < 1:
            vals.append(auroc(y[i], clean[i]) - auroc(y[i], bad[i]))
    return float(drop), [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))]


def run(*, quick: bool, work: Path, progress: bool) -> dict[str, Any]:
    cfg = QUICK if quick else PoisonConfig()
    return poison_audit(_cohort(quick, progress), cfg, work / ("quick" if quick else "full"), progress,
                        evaluation=_evaluation(work, progress))


def poison_audit(cohort: Path, cfg: PoisonConfig, work: Path, progress: bool, *,
                 evaluation: EncodedCases) -> dict[str, Any]:
    """Every aggregator clean and under every attack, for each seed (module docstring)."""
    from tqdm import tqdm

    work.mkdir(parents=True, exist_ok=True)
    encoded = _encoded_dir(cohort, work, progress)
    y = evaluation.labels.astype(float)
    plan = [(agg, attack, seed) for seed in range(cfg.seeds) for agg in AGGREGATORS for attack in (None, *cfg.attacks)]
    runs: dict[tuple[str, str | None, int], dict[str, Any]] = {}
    for agg, attack, seed in tqdm(plan, desc="poisoning runs", disable=not progress):
        name = f"{agg}-{attack or 'clean'}-seed{seed}"
        mod = poison_mod(cohort, cfg.site, attack, cfg.boost, seed) if attack else None
        runs[agg, attack, seed] = _one_run(name, cohort, encoded, AGGREGATORS[agg], seed, cfg.rounds, mod, work,
                                           evaluation)
    figures: dict[str, Any] = {}
    for agg in AGGREGATORS:
        clean_auc = [auroc(y, np.array(runs[agg, None, s]["logits"])) for s in range(cfg.seeds)]
        per_attack = {}
        for attack in cfg.attacks:
            drops = [_paired_drop(y, np.array(runs[agg, None, s]["logits"]), np.array(runs[agg, attack, s]["logits"]))
                     for s in range(cfg.seeds)]
            flagged = [all(r.get(cfg.site, {}).get("anomalous") for r in runs[agg, attack, s]["screen"])
                       for s in range(cfg.seeds)]
            per_attack[attack] = {"auroc_drop": float(np.mean([d for d, _ in drops])),
                                  "auroc_drop_ci95_per_seed": [ci for _, ci in drops],
                                  "poisoned_node_flagged_every_round": all(flagged)}
        false_flags = sum(bool(v.get("anomalous")) for s in range(cfg.seeds) for r in runs[agg, None, s]["screen"]
                          for k, v in r.items() if k != "round")
        figures[agg] = {"clean_auroc": float(np.mean(clean_auc)), "attacks": per_attack,
                        "honest_updates_flagged_in_clean_runs": false_flags,
                        "worst_attack": max(per_attack, key=lambda a: per_attack[a]["auroc_drop"])}
    keys = {"poison_auroc_drop": {agg: figures[agg]["attacks"][figures[agg]["worst_attack"]]["auroc_drop"]
                                  for agg in AGGREGATORS}}
    return {"keys": keys, "aggregators": figures, "config": asdict(cfg), "train_cohort": cohort.name,
            "evaluation_cases": len(y), "runs": len(runs),
            "robust_option": "coordinate-wise trimmed mean, trim-beta 0.25 (Flower FedTrimmedAvg)"}
