"""Membership inference against the federated model: what an attacker holding the final weights learns about
whether one patient was in one node's training data, without DP and at epsilon 1 and 8.

The setting (LiRA, Carlini et al. 2022, "Membership inference attacks from first principles"): one node's pool
of cases (``MIAConfig.node`` of the cohort) is split at random into members and non-members ``models`` times;
each split trains one federated model (the other three nodes train on all their cases, FedAvg in process with
the nodes' own training functions: ``federated.task.train_plain`` or ``train_dp`` with a fresh ledger and OS
entropy, the server's weighted mean, the mean of the last rounds' weights as the run's final model). Every model
in turn is the attacker's target and the others are its reference models: the synthetic cohort makes such
reference data free, which is the attacker's best case. Two attacks score each (target, case) pair:
- ``loss``: the target's loss on the case (Yeom et al. 2018): members tend to have lower loss;
- ``lira``: the case's difficulty calibrated on the reference models: the target's logit-scaled confidence in
  the true class, as a likelihood ratio of the Gaussians fitted to the references that did and did not train
  on it (online LiRA, one variance per variant: few references per case).

Figures are pooled over the targets: AUC (its 95% interval from a bootstrap over cases), TPR at 1% FPR and the
empirical epsilon lower bound the best threshold implies (Clopper-Pearson bounds on TPR and FPR at 95%,
delta of the ledger), beside the epsilon each ledger states. Pooled pairs share cases, so the lower bound is
indicative, not a certificate; the ledger's figure is the guarantee.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.reliability.fedsim import (
    base_fed,
    device_name,
    load_states,
    node_states,
    train_federated,
)
from workbench.jsonout import write_json
from workbench.metrics import auroc
from workbench.runtime.encode import EncodedCases

ATTACKS = ("loss", "lira")


@dataclass(frozen=True)
class MIAConfig:
    """What the audit trains and attacks. The DP variants use the federation's recipe (``FedConfig`` defaults:
    the fused head alone, SGD, Poisson rate 0.5, secure randomness); the plain one trains every trainable weight,
    as ``bench federated``'s ``fedavg`` does."""

    node: str = "hospital_a"  # whose members are attacked
    models: int = 16  # federated models per variant (each the target once, the others its references)
    rounds: int = 10
    final_average: int = 5
    epsilons: tuple[float, ...] = (1.0, 8.0)
    local_epochs: int = 2  # plain training: passes per round (more than the recipe's 1: the attack's best case)
    seed: int = 0  # the membership draws and the plain runs' data order (public: the DP noise stays secret)


QUICK = MIAConfig(models=4, rounds=3, final_average=2)


def _cohort(quick: bool, progress: bool) -> Path:
    """The full preset's test split (420 cases, 4 sites: about 105 at the attacked node), or the small cohort."""
    from workbench.bench.common import cached_cohort
    from workbench.bench.serve_bench import full_test_split

    return cached_cohort("small", 0, progress=progress) if quick else full_test_split(progress)


def memberships(n: int, models: int, seed: int) -> np.ndarray:
    """(models, n) booleans: each model's members, a random half of the pool. Balanced per case as well: model k
    and k+1 take complementary halves, so every case is a member of half the models."""
    rng = np.random.default_rng([seed, 7_717])
    out = np.zeros((models, n), dtype=bool)
    for k in range(0, models, 2):
        half = rng.permutation(n) < n // 2
        out[k] = half
        if k + 1 < models:
            out[k + 1] = ~half
    return out


def _variant_models(name: str, epsilon: float | None, data: dict[str, EncodedCases], cfg: MIAConfig,
                    member: np.ndarray, work: Path, progress: bool, *, only: list[int] | None = None,
                    device: str = "cpu") -> list[dict[str, Any]]:
    """Each model of one variant: its logits on the attacked node's pool (kept per model: resumable; ``only``
    trains just these models, e.g. one process each on a GPU machine)."""
    from tqdm import tqdm

    from workbench.runtime.inference import predict_logits

    pool = data[cfg.node]
    out = []
    for k in tqdm(only if only is not None else range(cfg.models), desc=f"MIA {name}", disable=not progress):
        f = work / name / f"model{k}.json"
        if f.is_file():
            out.append(json.loads(f.read_text()))
            continue
        own = {**data, cfg.node: pool.subset(np.flatnonzero(member[k]))}
        sim = train_federated(base_fed(), own, epsilon=epsilon, ledgers=work / name / f"ledgers{k}",
                              rounds=cfg.rounds, final_average=cfg.final_average, local_epochs=cfg.local_epochs,
                              seed=cfg.seed * 1000 + k, device=device)
        model, eps = sim.model, sim.epsilon
        rec = {"logits": predict_logits(model, pool)["logits"].tolist(), "member": member[k].tolist(),
               "epsilon": eps, "trained_on": device_name(device)}
        f.parent.mkdir(parents=True, exist_ok=True)
        write_json(f, rec)
        out.append(rec)
    return out


def attack_scores(logits: np.ndarray, labels: np.ndarray, member: np.ndarray) -> dict[str, np.ndarray]:
    """(models, n) scores of both attacks, each model the target and the others its references; higher means
    "member". ``logits`` and ``member`` are (models, n); ``labels`` (n,)."""
    sign = 2.0 * labels - 1.0
    phi = logits * sign  # logit of the model's confidence in the true class
    loss = np.logaddexp(0.0, -phi)  # binary cross-entropy
    m = len(logits)
    lira = np.zeros_like(phi)
    resid_in: list[float] = []
    resid_out: list[float] = []
    for t in range(m):
        refs = np.arange(m) != t
        for i in range(phi.shape[1]):
            ins, outs = phi[refs & member[:, i], i], phi[refs & ~member[:, i], i]
            resid_in.extend(ins - ins.mean() if len(ins) > 1 else [])
            resid_out.extend(outs - outs.mean() if len(outs) > 1 else [])
    s_in = float(np.std(resid_in)) if resid_in else 1.0
    s_out = float(np.std(resid_out)) if resid_out else 1.0
    s_in, s_out = max(s_in, 1e-3), max(s_out, 1e-3)
    for t in range(m):
        refs = np.arange(m) != t
        for i in range(phi.shape[1]):
            ins, outs = phi[refs & member[:, i], i], phi[refs & ~member[:, i], i]
            mu_out = outs.mean() if len(outs) else phi[refs, i].mean()
            log_out = -0.5 * ((phi[t, i] - mu_out) / s_out) ** 2 - math.log(s_out)
            if len(ins):  # online: both hypotheses
                log_in = -0.5 * ((phi[t, i] - ins.mean()) / s_in) ** 2 - math.log(s_in)
                lira[t, i] = log_in - log_out
            else:  # offline: how far above the non-members' confidence
                lira[t, i] = (phi[t, i] - mu_out) / s_out
    return {"loss": -loss, "lira": lira}


def _clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    from scipy.stats import beta

    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def empirical_epsilon(scores: np.ndarray, member: np.ndarray, delta: float) -> float:
    """The largest epsilon any threshold of ``scores`` proves at 95% confidence (Jagielski et al. 2020): an
    (epsilon, delta)-DP mechanism keeps TPR <= e^eps FPR + delta and 1 - FPR <= e^eps (1 - TPR) + delta."""
    pos, neg = scores[member], scores[~member]
    best = 0.0
    for thr in np.unique(scores):
        tp, fp = int((pos >= thr).sum()), int((neg >= thr).sum())
        tpr_lo, _ = _clopper_pearson(tp, len(pos))
        _, fpr_hi = _clopper_pearson(fp, len(neg))
        if fpr_hi > 0 and tpr_lo - delta > 0:
            best = max(best, math.log((tpr_lo - delta) / fpr_hi))
        if tpr_lo < 1 and 1 - fpr_hi - delta > 0:
            best = max(best, math.log((1 - fpr_hi - delta) / (1 - tpr_lo)))
    return best


def tpr_at_fpr(scores: np.ndarray, member: np.ndarray, fpr: float = 0.01) -> float:
    neg = np.sort(scores[~member])[::-1]
    k = int(math.floor(fpr * len(neg)))
    thr = neg[k] if k < len(neg) else -np.inf  # at most fpr of the non-members lie strictly above it
    return float((scores[member] > thr).mean())


def _auc_ci(scores: np.ndarray, member: np.ndarray, n_cases: int, reps: int = 400) -> list[float]:
    """95% interval of the pooled AUC from a bootstrap over the pool's cases (columns), all targets kept."""
    rng = np.random.default_rng(11)
    vals = []
    for _ in range(reps):
        cols = rng.integers(0, n_cases, n_cases)
        s, m = scores[:, cols].ravel(), member[:, cols].ravel()
        if 0 < m.mean() < 1:
            vals.append(auroc(m.astype(float), s))
    return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))]


def variant_figures(models: list[dict[str, Any]], labels: np.ndarray, delta: float) -> dict[str, Any]:
    logits = np.array([m["logits"] for m in models], dtype=float)
    member = np.array([m["member"] for m in models], dtype=bool)
    scores = attack_scores(logits, labels, member)
    out: dict[str, Any] = {}
    for name, s in scores.items():
        flat, mflat = s.ravel(), member.ravel()
        out[name] = {"auc": auroc(mflat.astype(float), flat), "auc_ci95": _auc_ci(s, member, s.shape[1]),
                     "tpr_at_1pct_fpr": tpr_at_fpr(flat, mflat),
                     "epsilon_lower_bound": empirical_epsilon(flat, mflat, delta)}
    utility = [auroc(labels[~m], lg[~m]) for lg, m in zip(logits, member, strict=True) if 0 < labels[~m].mean() < 1]
    out["utility_auroc_nonmembers"] = float(np.mean(utility)) if utility else None
    eps = [v for m in models for v in m["epsilon"].values()]
    out["ledger_epsilon"] = max(eps) if eps else None
    out["pairs"] = int(member.size)
    out["trained_on"] = sorted({str(m.get("trained_on", "")) for m in models})
    return out


def run(*, quick: bool, work: Path, progress: bool) -> dict[str, Any]:
    cfg = QUICK if quick else MIAConfig()
    return mia_audit(_cohort(quick, progress), cfg, work / ("quick" if quick else "full"), progress)


def mia_audit(cohort: Path, cfg: MIAConfig, work: Path, progress: bool = False) -> dict[str, Any]:
    """Both attacks on every variant (module docstring); the contract's keys under ``keys``."""
    data = node_states(cohort, work, progress)
    pool = data[cfg.node]
    labels = pool.labels.astype(float)
    member = memberships(len(pool), cfg.models, cfg.seed)
    delta = base_fed().dp_delta
    variants: dict[str, float | None] = {"no_dp": None, **{f"eps{e:g}": e for e in cfg.epsilons}}
    figures = {name: variant_figures(_variant_models(name, eps, data, cfg, member, work, progress), labels, delta)
               for name, eps in variants.items()}

    def best(v: str, key: str) -> float:  # the stronger attack's figure
        return max(figures[v][a][key] for a in ATTACKS)

    first_dp = f"eps{cfg.epsilons[0]:g}"
    keys = {"mia_auc": {"no_dp": best("no_dp", "auc"), "dp": best(first_dp, "auc")},
            "mia_auc_by_epsilon": {**{f"{e:g}": best(f"eps{e:g}", "auc") for e in cfg.epsilons},
                                   "inf": best("no_dp", "auc")},
            "mia_tpr_at_1pct_fpr": {v: best(v, "tpr_at_1pct_fpr") for v in variants}}
    return {"keys": keys, "variants": figures, "config": asdict(cfg), "cohort": cohort.name,
            "pool": {"node": cfg.node, "cases": len(pool), "members_per_model": int(member[0].sum())},
            "attacks": list(ATTACKS),
            "trained_on": sorted({d for f in figures.values() for d in f["trained_on"]}),
            "figures_computed_on": "this machine (the envelope's machine): attacks, intervals, epsilon bounds",
            "note": "each figure is the stronger of the two attacks (both under variants); the DP variants' "
                    "ledger_epsilon is the attacked node's lifetime epsilon from its own ledger"}


def main(argv: list[str] | None = None) -> int:
    """Train some of the audit's models elsewhere (a GPU machine: ``bench/reliability_mia_gpu.sh``) from the
    cases' states file ``node_states`` keeps; their JSON files go back into the work folder, where ``workbench
    bench reliability --part mia`` finds them trained and computes the figures."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m workbench.bench.reliability.mia")
    p.add_argument("states", help="a states-<cohort>.pt file written by node_states")
    p.add_argument("--out", required=True, help="the work folder to fill (<variant>/model<k>.json)")
    p.add_argument("--variant", required=True, help="no_dp or eps<E> (e.g. eps1)")
    p.add_argument("--models", default="", help="first-last model numbers (default all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    cfg = QUICK if a.quick else MIAConfig()
    data = load_states(a.states)
    member = memberships(len(data[cfg.node]), cfg.models, cfg.seed)
    eps = None if a.variant == "no_dp" else float(a.variant.removeprefix("eps"))
    lo, hi = (int(x) for x in a.models.split("-")) if a.models else (0, cfg.models - 1)
    _variant_models(a.variant, eps, data, cfg, member, Path(a.out), True, only=list(range(lo, hi + 1)),
                    device=a.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
