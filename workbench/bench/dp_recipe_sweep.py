"""The DP recipe, re-chosen on ``val``: a sweep of the nodes' DP-SGD settings, scored on the training cohort's val split.

Why a simulation and not Flower: under the federated recipe (``dp-train = head``) every layer below the fused head
is frozen, so each case's fused vector is the same in every round; the federation is then FedAvg of a 65-weight
logistic head whose nodes run DP-SGD on those vectors. This module runs exactly that (the nodes' own step,
``workbench.train.private._train_private_head``'s rule: Poisson sampling at the rate, per-case clipping, Gaussian
noise of the ledger's multiplier over the public expected batch; FedAvg weighted by each node's noised case count;
the final model the mean of the last ``final-average`` rounds), in seconds instead of a Flower run's minutes, for a
grid of settings and many repeats. The noise multiplier of each setting is the ledger's own plan
(``PrivacyLedger.plan_noise`` after the count release, for all rounds at once); the later rounds' re-plans give the
same multiplier when every round spends as planned.

Scored on the **val** split only (pooled over sites, AUROC of the head's logits); every record says
``"split": "val"``. The test split and the evaluation cohort are never read. The randomness here is the sweep's
own (seeded per repeat): a sweep is a benchmark, not a node.

    python -m workbench.bench.dp_recipe_sweep [--truth brock] [--repeats 10] [--out bench/results]
writes ``dp_recipe_sweep_val[_shifted].jsonl`` (one record per setting) and prints the choice: the setting with the
best mean val AUROC, its paired difference from the default (the same val cases and repeat seeds, bootstrapped over
both as ``workbench.bench.seeds`` draws), and whether the default is kept (that difference's interval reaches 0).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.bench.seeds import Figure, mean_ci, paired

GRID = {"dp_lr": (0.1, 0.5, 2.0), "dp_epochs": (4.0, 16.0, 32.0), "dp_sample_rate": (0.25, 0.5)}


@dataclass(frozen=True)
class Setting:
    dp_lr: float
    dp_epochs: float
    dp_sample_rate: float
    dp_epsilon: float = 1.0
    rounds: int = 10
    final_average: int = 5
    max_grad_norm: float = 1.0
    count_noise: float = 20.0
    class_prior: float = 0.25
    delta: float = 1e-5

    @property
    def steps(self) -> int:
        return max(1, round(self.dp_epochs / self.dp_sample_rate))


def noise_multiplier(s: Setting) -> float:
    """The multiplier a fresh node's ledger plans for this setting (count released first, as ``train_dp`` does)."""
    from federated.ledger import PrivacyLedger

    with tempfile.TemporaryDirectory() as tmp:
        ledger = PrivacyLedger.open(Path(tmp) / "ledger.json", "sweep", s.dp_epsilon, s.delta)
        ledger.count_release("sweep", 100, s.count_noise, seed=0)
        return ledger.plan_noise("sweep", s.dp_epsilon, s.rounds, s.dp_sample_rate, s.steps)


def simulate(s: Setting, sigma: float, nodes: list[tuple[torch.Tensor, torch.Tensor]], head0: torch.Tensor,
             g: torch.Generator) -> torch.Tensor:
    """FedAvg of the DP-trained head over ``s.rounds`` rounds; returns the final (averaged) head (D + 1: weight,
    then bias). ``nodes``: each node's fused vectors (N, D) and labels (N,)."""
    c = s.max_grad_norm
    pos_weight = (1 - s.class_prior) / s.class_prior
    counts = [len(y) + s.count_noise * float(torch.randn(1, generator=g)) for _, y in nodes]
    global_head, history = head0.clone(), []
    for _ in range(s.rounds):
        updates = []
        for (fused, y), count in zip(nodes, counts, strict=True):
            n = len(y)
            x_all = torch.cat([fused, torch.ones(n, 1)], 1)
            w_all = torch.where(y > 0.5, torch.tensor(pos_weight), torch.tensor(1.0))
            head = global_head.clone()
            batch = s.dp_sample_rate * max(1.0, count)
            for _ in range(s.steps):
                idx = torch.nonzero(torch.rand(n, generator=g) < s.dp_sample_rate).flatten()
                x = x_all[idx]
                per = ((torch.sigmoid(x @ head) - y[idx]) * w_all[idx])[:, None] * x
                scale = (c / (per.norm(dim=1) + 1e-6)).clamp(max=1.0)
                grad = (scale @ per + torch.randn(x_all.shape[1], generator=g) * (sigma * c)) / batch
                head = head - s.dp_lr * grad
            updates.append((head, max(1.0, count)))
        total = sum(w for _, w in updates)
        global_head = sum(h * (w / total) for h, w in updates)  # type: ignore[assignment]
        history = [*history, global_head][-s.final_average:]
    return torch.stack(history).mean(0)


def fused_splits(truth: str, progress: bool) -> dict[str, Any]:
    """The starting model's fused vectors of the training cohort's train (per site) and val splits."""
    from workbench.bench.federated_bench import federated_setup
    from workbench.models.model import load_model
    from workbench.runtime.encode import with_ct_states, with_note_states
    from workbench.train.private import fused_of

    setup = federated_setup(truth=truth, progress=progress)
    model = load_model(setup.init)
    from workbench.models.shipped import shipped

    init = "shipped fusion_init" if setup.init.resolve() == shipped("fusion_init").resolve() else setup.init.name
    out: dict[str, Any] = {"init": init, "cohort": setup.cohort_dir.name}
    for split in ("train", "val"):
        d = with_ct_states(model, with_note_states(model, setup.data[split]))
        out[split] = (fused_of(model, d), torch.as_tensor(d.labels, dtype=torch.float32), np.array(d.sites))
    head = model.fusion.head
    out["head0"] = torch.cat([head.weight.detach().flatten(), head.bias.detach().flatten()]).float()
    return out


def run_sweep(truth: str = "brock", repeats: int = 10, progress: bool = True) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from federated.config import FedConfig
    from federated.ledger import BudgetExhausted
    from workbench.metrics import auroc

    data = fused_splits(truth, progress)
    fused, y, sites = data["train"]
    nodes = [(fused[sites == s], y[sites == s]) for s in sorted(set(sites.tolist()))]
    vf, vy, _ = data["val"]
    xv = torch.cat([vf, torch.ones(len(vy), 1)], 1)
    default = FedConfig()
    settings = [Setting(lr, ep, rate) for lr, ep, rate in itertools.product(*GRID.values())]
    records: list[dict[str, Any]] = []
    kept: dict[int, list[np.ndarray]] = {}  # each feasible setting's val logits per repeat (repeat r: seed 10000 + r)
    for s in tqdm(settings, desc="DP settings (val)", disable=not progress):
        base = {"split": "val", "truth": truth, "cohort": data["cohort"], "init": data["init"],
                "dp_lr": s.dp_lr, "dp_epochs": s.dp_epochs, "dp_sample_rate": s.dp_sample_rate,
                "dp_steps": s.steps, "dp_epsilon": s.dp_epsilon, "rounds": s.rounds,
                "is_default": (s.dp_lr, s.dp_epochs, s.dp_sample_rate) ==
                              (default.dp_lr, default.dp_epochs, default.dp_sample_rate)}
        try:
            sigma = noise_multiplier(s)
        except BudgetExhausted as e:  # this many steps at this rate cannot fit epsilon at any noise
            records.append({**base, "feasible": False, "reason": str(e), "val_auroc": None})
            continue
        logits = []
        for r in range(repeats):
            head = simulate(s, sigma, nodes, data["head0"], torch.Generator().manual_seed(10_000 + r))
            logits.append((xv @ head).numpy())
        mean, ci = mean_ci(Figure(vy.numpy(), logits))
        kept[len(records)] = logits
        records.append({**base, "feasible": True, "final_average": s.final_average, "noise_multiplier": sigma,
                        "repeats": repeats, "n_val": len(vy), "val_auroc": mean, "val_auroc_ci95": ci,
                        "val_auroc_by_repeat": [auroc(vy.numpy(), v) for v in logits]})
    d = next(i for i, r in enumerate(records) if r["is_default"])
    for i, logits in kept.items():  # paired on the same val cases and the same repeat seeds
        records[i]["val_auroc_minus_default"] = paired(Figure(vy.numpy(), logits, baseline=kept[d]))
    return records


def choice(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The best setting on val, and whether the default is kept: the best's paired gain over it is not above 0."""
    records = [r for r in records if r["feasible"]]
    best = max(records, key=lambda r: r["val_auroc"])
    dflt = next((r for r in records if r["is_default"]), None)
    keep = dflt is not None and best["val_auroc_minus_default"]["ci95"][0] <= 0
    return {"best": {k: best[k] for k in ("dp_lr", "dp_epochs", "dp_sample_rate", "val_auroc", "val_auroc_ci95")},
            "default": None if dflt is None else {k: dflt[k] for k in ("dp_lr", "dp_epochs", "dp_sample_rate",
                                                                         "val_auroc", "val_auroc_ci95")},
            "best_minus_default": best["val_auroc_minus_default"],
            "default_kept": keep}


def main(argv: list[str] | None = None) -> int:
    from workbench.atomic import atomic_write

    p = argparse.ArgumentParser(prog="python -m workbench.bench.dp_recipe_sweep", description=__doc__.split("\n")[0])
    p.add_argument("--truth", default="brock", choices=("brock", "shifted"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", help="folder for dp_recipe_sweep_val[_shifted].jsonl (e.g. bench/results)")
    a = p.parse_args(argv)
    records = run_sweep(a.truth, a.repeats)
    if a.out:
        path = Path(a.out) / f"dp_recipe_sweep_val{'_shifted' if a.truth == 'shifted' else ''}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    for r in records:
        if not r["feasible"]:
            print(f"lr {r['dp_lr']:<4g} epochs {r['dp_epochs']:<4g} rate {r['dp_sample_rate']:<5g}: infeasible at "
                  f"epsilon {r['dp_epsilon']:g} ({r['dp_steps']} steps a round)")
    for r in sorted((r for r in records if r["feasible"]), key=lambda r: -r["val_auroc"]):
        print(f"lr {r['dp_lr']:<4g} epochs {r['dp_epochs']:<4g} rate {r['dp_sample_rate']:<5g} steps {r['dp_steps']:<4d}"
              f" sigma {r['noise_multiplier']:6.2f}  val AUROC {r['val_auroc']:.3f} "
              f"[{r['val_auroc_ci95'][0]:.3f}, {r['val_auroc_ci95'][1]:.3f}]  vs default "
              f"{r['val_auroc_minus_default']['value']:+.3f} [{r['val_auroc_minus_default']['ci95'][0]:+.3f}, "
              f"{r['val_auroc_minus_default']['ci95'][1]:+.3f}]{'  (default)' if r['is_default'] else ''}")
    print(json.dumps(choice(records)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
