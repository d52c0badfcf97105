"""``workbench federate``: the Flower apps of ``federated/`` in a local simulation, one SuperNode per site.

The same ``ServerApp``/``ClientApp`` that ``flwr run .`` starts, run through ``flwr.simulation.run_simulation``
with their configuration bound in (run_simulation passes no run config). Afterwards the RUN folder is made a
normal RUN: the final model (``model/``), its calibration, the round log with its plot, and each node's privacy
summary read back from its ledger (epsilon under the three accountants, and whether its randomness was secret).

Calibration follows the privacy mode. Under DP each node fits its own calibrators on its own records
(``workbench calibrate RUN SITE_DIR``, one call per site that sees that site alone) and they stay per site in
``uncertainty.json``; ``calibration.json`` holds only the public prior correction. Without DP the federation
pools every site's val predictions and labels for one Platt fit, and ``federation.json`` says the run is not
private and what left each node.

RUN/
  model/            final global model (a model folder)
  checkpoint/       the global weights after the latest round
  rounds.json       per round and node: cases, loss, epsilon, refusals, bytes; per-site val AUROC
  rounds.png        val AUROC per site and epsilon per node, by round
  calibration.json  without DP: prior correction + Platt on the pooled val split; under DP: the prior correction
  uncertainty.json  under DP: each site's calibrators, fitted by that site from its own records
  federation.json   config, privacy statement, nodes, epsilon per node (three accountants), wall time

The saved records hold no absolute machine path: their config names folders relative to the RUN, or not at all
(``FedConfig.to_record``), so a RUN can be moved or shared without telling where it was made.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from federated.config import FedConfig
from federated.ledger import PrivacyLedger
from workbench.errors import WorkbenchError
from workbench.jsonout import write_json
from workbench.runtime.run import site_dirs_of
from workbench.train.dp_signal import SignalCheck, check_signal


def run_federated(fed: FedConfig, out: str | Path, *, calibrate: bool = True,
                  client_mods: list[Any] | None = None) -> dict[str, Any]:
    """Run the federation described by ``fed`` into ``out``; returns the summary written to federation.json.
    ``client_mods``: Flower client mods around every node's handlers (e.g. ``federated.egress.capture_mod``)."""
    from flwr.simulation import run_simulation

    from federated.client_app import make_client_app
    from federated.server_app import make_server_app

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not fed.cohort:
        raise WorkbenchError("workbench federate: a cohort folder is needed (one node per site)")
    sites = site_dirs_of(fed.cohort)
    fed = FedConfig(**{**fed.__dict__, "out_dir": str(out), "cohort": str(Path(fed.cohort).resolve()),
                       "run_tag": fed.run_tag or f"{out.name}-{time.strftime('%Y%m%dT%H%M%S')}"})
    fed.check()
    signal = dp_preflight(fed, sites) if fed.dp else {}
    for check in signal.values():
        if not check.learnable:
            print(f"warning: {check.message()}", flush=True)
    t0 = time.perf_counter()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    logging.getLogger("flwr").setLevel(logging.ERROR)  # node errors are kept in rounds.json and the summary
    run_simulation(
        server_app=make_server_app(fed, n_nodes=len(sites)),
        client_app=make_client_app(fed, mods=client_mods),
        num_supernodes=len(sites),
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": max(1, min(len(sites), os.cpu_count() or 1)),
                                      "include_dashboard": False, "log_to_driver": False}},
    )
    seconds = time.perf_counter() - t0
    if not (out / "model").is_dir():
        raise WorkbenchError(f"{out}: the federation ended without a model (see the log above for the node errors)")
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    summary: dict[str, Any] = {"config": fed.to_record(out), "sites": [s.name for s in sites],
                               "rounds": len(rounds), "seconds": seconds,
                               "refused": {n["site"]: n["refused"] for r in rounds for n in r["nodes"] if "refused" in n},
                               "errors": [f"round {r['round']}, node {n['node_id']}: {n['error']}" for r in rounds
                                          for n in r["nodes"] if "error" in n]}
    summary["privacy"] = json.loads((out / "rounds.json").read_text()).get("privacy", {})
    if signal:
        summary["dp_signal"] = {s: c.to_dict() for s, c in signal.items()}
    if fed.dp:
        from federated.task import state_dir

        eps = {}
        for s in sites:
            path = state_dir(fed, {}, s) / "privacy_ledger.json"
            if path.exists():
                led = PrivacyLedger.open(path, s.name, fed.dp_budget, fed.dp_delta)
                eps[s.name] = {"run": led.epsilon(fed.run_tag), "lifetime": led.epsilon(),
                               "budget": fed.dp_budget, "delta": fed.dp_delta,
                               "secure_randomness": led.secure(), "accountants": led.epsilons()}
        summary["epsilon"] = eps
    if calibrate:
        summary["calibration"] = _calibrate_at_nodes(out, sites) if fed.dp else _calibrate(fed, out)
    write_json(out / "federation.json", summary)
    return summary


def dp_preflight(fed: FedConfig, sites: list[Path]) -> dict[str, SignalCheck]:
    """Before DP training, each node's best-case signal-to-noise (``workbench.train.dp_signal``): its train cases,
    the noise its ledger would plan for this run now, the weights ``dp-train`` trains. Read-only: no ledger is
    written. A node whose budget cannot fund the run is left out here (it refuses, and says so, when asked)."""
    from federated.ledger import BudgetExhausted
    from federated.task import build, dp_trainable, state_dir
    from workbench.data.case import load_cases

    dim = dp_trainable(build(fed), fed)
    out: dict[str, SignalCheck] = {}
    for site in sites:
        n = sum(c.split == "train" for c in load_cases(site))
        ledger = PrivacyLedger.open(state_dir(fed, {}, site) / "privacy_ledger.json", site.name, fed.dp_budget,
                                    fed.dp_delta)
        try:
            sigma = ledger.plan_noise(fed.run_tag, fed.dp_epsilon, fed.num_server_rounds, fed.dp_sample_rate,
                                      fed.dp_steps)
        except BudgetExhausted:
            continue
        out[site.name] = check_signal(site.name, n, fed.dp_epsilon, fed.dp_sample_rate, fed.dp_steps,
                                      fed.num_server_rounds, sigma, dim)
    return out


def _calibrate_at_nodes(out: Path, sites: list[Path]) -> dict[str, Any]:
    """DP: each node calibrates on its own records (one ``calibrate_run`` per site folder, which reads that site
    alone and merges its calibrators into the RUN's ``uncertainty.json``)."""
    from workbench.runtime.run_uncertainty import calibrate_run

    res: dict[str, Any] = {"sites": {}, "warnings": []}
    for site in sites:  # each call merges its site into the RUN's uncertainty.json and returns all sites so far
        res = calibrate_run(out, site, progress=False)
    return {"fitted_at": "each node, on its own records", "sites": res["sites"], "warnings": res["warnings"]}


def _calibrate(fed: FedConfig, out: Path) -> dict[str, Any]:
    """Without DP: prior correction for the class weights and Platt scaling on the pooled val split (raw val
    logits of every site leave their nodes for it: the run is not private)."""
    from federated import task
    from workbench.models.model import load_model
    from workbench.runtime.calibration import fit_calibration
    from workbench.runtime.inference import predict_logits
    from workbench.train.trainer import pos_weight_of

    model = load_model(out / "model")
    sites = site_dirs_of(fed.cohort)
    val = [task.node_data(fed, s, model, "val") for s in sites]
    train = [task.node_data(fed, s, model, "train") for s in sites]
    labels = np.concatenate([d.labels for d in train]) if train else np.zeros(0)
    logits = np.concatenate([predict_logits(model, d)["logits"] for d in val if len(d)] or [np.zeros(0)])
    y = np.concatenate([d.labels for d in val if len(d)] or [np.zeros(0)])
    cal = fit_calibration(logits, y, pos_weight_of(labels))
    write_json(out / "calibration.json", cal.to_dict())
    return {**cal.to_dict(), "fitted_at": "server, on every site's pooled val logits and labels (not private)"}
