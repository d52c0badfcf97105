"""FedAvg in one process, for the audits that train many federated models (membership inference: 48; poisoning:
24): every node trains with the nodes' own functions (``federated.task.train_plain``, or ``train_dp`` with its
own fresh ledger and OS entropy), the server aggregates as Flower's strategies do (the mean weighted by the
reported case counts: FedAvg; the coordinate-wise trimmed mean: FedTrimmedAvg; or ``federated.robust``'s
norm-bounded mean of the screened updates) and screens each update as the
ServerApp does (``federated.update_screen``); the final model is the mean of the last rounds' weights
(``final-average``). Only the transport differs from a Flower run, which ``tests/reliability/test_poison.py``
runs for real; here a model costs seconds on a GPU machine instead of minutes of Ray on a CPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.runtime.encode import EncodedCases

ATTACKS = ("scale", "sign_flip", "random")


def base_fed() -> Any:
    """The audits' federation recipe: ``FedConfig``'s defaults over the shipped readers and starting model."""
    from federated.config import FedConfig
    from workbench.models.shipped import shipped

    return FedConfig(text_encoder=str(shipped("note_reader")), ct_encoder=str(shipped("ct_reader")),
                     init_model=str(shipped("fusion_init")), progress=False)


def device_name(device: str) -> str:
    """Where a model trained, for its JSON (``trained_on``)."""
    from workbench.bench.common import machine

    return f"{torch.cuda.get_device_name(0)} (cuda)" if device.startswith("cuda") else machine()


def by_site(data: EncodedCases) -> dict[str, EncodedCases]:
    """The cases per site, as float32 (states carried to a GPU machine as float16: a call carries 64 MiB)."""
    data = EncodedCases(data.case_ids, data.sites, {k: v.float() if v.dtype == torch.float16 else v
                                                    for k, v in data.tensors.items()}, list(data.refused))
    sites = np.array(data.sites)
    return {s: data.subset(np.flatnonzero(sites == s)) for s in sorted(set(data.sites))}


def load_states(path: str | Path) -> dict[str, EncodedCases]:
    """A states file ``node_states`` wrote (or a float16 copy of it), per site."""
    return by_site(EncodedCases.load(path))


def node_states(cohort: Path, work: Path, progress: bool) -> dict[str, EncodedCases]:
    """Every case of ``cohort`` with the frozen readers' states, per site (kept in ``work``: encoded once). The
    readers are frozen, so the simulated nodes train from these states alone: no DICOM is read again."""
    from federated.task import build
    from workbench.data.cache import PreprocessCache, default_cache_dir
    from workbench.runtime.encode import encode_cases, with_ct_states, with_note_states
    from workbench.runtime.run import cases_of

    f = work / f"states-{cohort.name}.pt"
    if f.is_file():
        return load_states(f)
    model = build(base_fed())
    assert model.tokenizer is not None
    data = encode_cases(cases_of([cohort], ["train", "val", "calib", "test"]), model.tokenizer,
                        cache=PreprocessCache(default_cache_dir()), progress=progress, desc=f"encode {cohort.name}",
                        max_length=model.config.text.max_length)
    data = with_ct_states(model, with_note_states(model, data))
    data = EncodedCases(data.case_ids, data.sites, {k: v for k, v in data.tensors.items()
                                                    if k not in ("ct_patch", "ct_context")}, list(data.refused))
    work.mkdir(parents=True, exist_ok=True)
    data.save(f)
    return by_site(data)


def poisoned_update(kind: str, delta: np.ndarray, boost: float, rng: np.random.Generator) -> np.ndarray:
    """What the attacker sends instead of its honest update ``delta``: ``boost`` times it (``scale``), minus
    ``boost`` times it (``sign_flip``) or Gaussian noise of ``boost`` times its size (``random``): a
    model-replacement attacker who wants to dominate a four-node mean."""
    if kind == "scale":
        return boost * delta
    if kind == "sign_flip":
        return -boost * delta
    if kind == "random":
        return rng.normal(0.0, boost * float(np.sqrt(np.mean(delta ** 2))) + 1e-12, size=delta.shape)
    raise ValueError(f"attack {kind!r}: expected one of {ATTACKS}")


@dataclass(frozen=True)
class Attacker:
    site: str
    kind: str
    boost: float = 10.0


@dataclass
class SimResult:
    model: Any
    epsilon: dict[str, float] = field(default_factory=dict)  # each node's ledger, DP runs only
    screens: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # per round, per site


def _aggregate(states: list[dict[str, torch.Tensor]], weights: list[float], names: list[str],
               aggregator: str, global_state: dict[str, torch.Tensor],
               screen: dict[int, dict[str, Any]]) -> dict[str, torch.Tensor]:
    if aggregator == "normbounded":  # federated.robust: the screened updates, clipped to the median norm
        from federated.update_screen import bounded_scales

        scale = bounded_scales(screen)
        keep = sorted(scale)
        w = torch.tensor([weights[i] for i in keep], dtype=torch.float64)
        w = w / w.sum()
        return {k: (global_state[k].double() + sum(wi * scale[i] * (states[i][k].double() - global_state[k].double())
                                                   for wi, i in zip(w, keep, strict=True))).to(states[0][k].dtype)
                if states[0][k].is_floating_point() else states[0][k] for k in names}
    if aggregator == "mean":
        w = torch.tensor(weights, dtype=torch.float64) / sum(weights)
        return {k: sum(wi * s[k].double() for wi, s in zip(w, states, strict=True)).to(states[0][k].dtype)
                for k in names}
    if aggregator == "trimmed":  # FedTrimmedAvg, beta 0.25 of four: one node cut at each end, per coordinate
        cut = max(1, int(0.25 * len(states)))
        out = {}
        for k in names:
            stacked = torch.stack([s[k].double() for s in states]).sort(dim=0).values
            out[k] = stacked[cut:len(states) - cut].mean(dim=0).to(states[0][k].dtype)
        return out
    raise ValueError(f"aggregator {aggregator!r}: expected mean, trimmed or normbounded")


def train_federated(base: Any, data: dict[str, EncodedCases], *, epsilon: float | None = None,
                    ledgers: Path | None = None, rounds: int, final_average: int, local_epochs: int, seed: int,
                    device: str = "cpu", aggregator: str = "mean", attacker: Attacker | None = None) -> SimResult:
    """One federated model (module docstring). ``attacker``: that node's update is replaced
    (``poisoned_update``) before the server sees it."""
    from federated.ledger import PrivacyLedger
    from federated.task import build, exchanged_names, state_of, train_dp, train_plain
    from federated.update_screen import screen_updates

    fed = replace(base, seed=seed, local_epochs=local_epochs, num_server_rounds=rounds)
    if epsilon is not None:
        fed = replace(fed, dp=True, dp_epsilon=epsilon, dp_budget=epsilon)
        assert ledgers is not None, "a DP run keeps each node's ledger"
    model = build(fed)
    names = exchanged_names(model, "trainable")
    global_state: dict[str, torch.Tensor] = dict(state_of(model, names))
    history: list[dict[str, torch.Tensor]] = []
    books = ({s: PrivacyLedger.open(ledgers / f"{s}.json", s, epsilon, fed.dp_delta) for s in data}
             if epsilon is not None and ledgers is not None else {})
    rng = np.random.default_rng([seed, 31])
    screens = []
    for r in range(1, rounds + 1):
        states: list[dict[str, torch.Tensor]] = []
        weights: list[float] = []
        for site, d in data.items():
            local = copy.deepcopy(model)
            local.load_state_dict(global_state, strict=False)
            if epsilon is not None:
                metrics = train_dp(local, d, fed, books[site], "audit", r)
                books[site].save()
            else:
                metrics = train_plain(local, d, fed, r, device=device)
            state: dict[str, torch.Tensor] = dict(state_of(local, names))
            if attacker is not None and site == attacker.site:
                state = {k: (global_state[k].double() + torch.from_numpy(poisoned_update(
                    attacker.kind, (v.double() - global_state[k].double()).numpy(), attacker.boost, rng))
                    ).to(v.dtype) if v.is_floating_point() else v for k, v in state.items()}
            states.append(state)
            weights.append(float(metrics.get("num-examples", len(d))))
        deltas = {i: np.concatenate([(s[k].double() - global_state[k].double()).ravel().numpy()
                                     for k in names if s[k].is_floating_point()]) for i, s in enumerate(states)}
        found = screen_updates(deltas)
        screens.append({site: found[i] for i, site in enumerate(data)})
        global_state = _aggregate(states, weights, names, aggregator, global_state, found)
        history.append(global_state)
    last = history[-final_average:]
    final = {k: torch.stack([s[k].double() for s in last]).mean(dim=0).to(last[0][k].dtype) for k in names}
    model.load_state_dict(final, strict=False)
    return SimResult(model.cpu(), {s: b.epsilon() for s, b in books.items()}, screens)
