"""The hospital node's ``ClientApp``: train and evaluate on its own site's cases, through Flower's Message API.

The node is told which site it is by ``node_config`` (``site-dir`` on a real SuperNode, ``partition-id`` in a
simulation) and keeps its state there: the privacy ledger, the audit log, its own metrics log. Under DP it asks
its ledger for this round's noise; when the budget is spent it refuses with a reason and sends no weights (the
server carries on without it).

What leaves the node under DP is ``federated.egress.DP_EGRESS``: the model update and scalars that are either
in the ledger or computed from no private record (``check_reply`` refuses anything else). Evaluation metrics
are computed and kept at the node (``local_metrics.jsonl``); the server hears only that they were. A split the
node does not allow (``eval-splits``; ``test`` only where the hospital chooses) is refused. An error inside the
node reaches the server as its class name only; the message, which may name a case, stays in the node's log.
Without DP, train loss, throughput and val AUROC and loss are sent too, and the run says it is not private.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, cast

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federated import audit, task
from federated.config import FedConfig
from federated.egress import check_reply
from federated.ledger import BudgetExhausted, PrivacyLedger
from workbench.errors import WorkbenchError

PLAIN_METRIC_KEYS = ("num-examples", "train_loss", "samples_per_s", "update_norm")
NODE_ERROR = 1001  # Flower error code for "the node failed; details in its own log"


def _config(base: FedConfig | None, context: Context) -> FedConfig:
    return FedConfig.from_run_config(dict(context.run_config), base)


def _guarded(fn: Callable[[Message, Context], Message], base: FedConfig | None) -> Callable[[Message, Context], Message]:
    """Run ``fn``; on an exception, log it at the node and send the server the exception's class alone."""

    def run(msg: Message, context: Context) -> Message:
        try:
            return fn(msg, context)
        except Exception as e:  # noqa: BLE001 - every failure becomes a reply; the node keeps the details
            try:
                fed = _config(base, context)
                site = task.node_site(fed, dict(context.node_config))
                state = task.state_dir(fed, dict(context.node_config), site)
                state.mkdir(parents=True, exist_ok=True)
                with open(state / "node_errors.log", "a", encoding="utf-8") as f:
                    f.write(traceback.format_exc() + "\n")
            except Exception:  # noqa: BLE001 - a node without a usable state dir still answers
                pass
            return Message(Error(NODE_ERROR, f"node error ({type(e).__name__}); the node's own log has the details"),
                           reply_to=msg)

    return run


def make_client_app(base: FedConfig | None = None, mods: list[Any] | None = None) -> ClientApp:
    """A ClientApp bound to ``base`` (``workbench federate``), overridden by the run config (``flwr run``);
    ``mods``: Flower client mods around both handlers (e.g. ``egress.capture_mod``)."""
    app = ClientApp(mods=mods or [])

    def train(msg: Message, context: Context) -> Message:
        fed = _config(base, context)
        torch.set_num_threads(1)
        site = task.node_site(fed, dict(context.node_config))
        state = task.state_dir(fed, dict(context.node_config), site)
        train_cfg = msg.content.config_records["config"]
        # the run's round and ledger name as the server counts them (a resumed run goes on from its checkpoint)
        server_round = int(cast(int, train_cfg["server-round"])) + int(cast(int, train_cfg.get("round-offset", 0)))
        received = msg.content.array_records["arrays"].to_torch_state_dict()
        model = task.build(fed)
        task.load_state(model, received)
        data = task.node_data(fed, site, model, "train")
        info: dict[str, Any] = {"site": site.name, "refusal": ""}
        if fed.dp:
            ledger = PrivacyLedger.open(state / "privacy_ledger.json", site.name, fed.dp_budget, fed.dp_delta)
            run_id = str(train_cfg.get("run-tag") or fed.run_tag or context.run_id)
            try:
                metrics: dict[str, Any] = task.train_dp(model, data, fed, ledger, run_id, server_round)
            except BudgetExhausted as e:
                info["refusal"] = str(e)
                audit.append(state / "audit.jsonl", {"round": server_round, "site": site.name,
                                                     "received": task.state_digest(received), "refused": str(e)})
                reply = RecordDict({"info": ConfigRecord(info)})
                check_reply(reply, dp=True)
                return Message(reply, reply_to=msg)
        else:
            metrics = dict.fromkeys(PLAIN_METRIC_KEYS, 0.0)
            metrics["num-examples"] = len(data)
            metrics.update(task.train_plain(model, data, fed, server_round,
                                            float(cast(float, train_cfg.get("proximal-mu", 0.0)))))
        sent = task.state_of(model, list(received.keys()))
        norm = float(torch.stack([((sent[k].float() - received[k].float()) ** 2).sum() for k in sent]).sum().sqrt())
        metrics["update_norm"] = norm
        audit.append(state / "audit.jsonl", {
            "round": server_round, "site": site.name, "received": task.state_digest(received),
            "sent": task.state_digest(sent), "update_norm": norm,
            "epsilon_total": metrics["epsilon_total"] if fed.dp else None,
            "secure_randomness": bool(metrics["secure_randomness"]) if fed.dp else None})
        reply = RecordDict({"arrays": ArrayRecord(sent), "metrics": MetricRecord(metrics), "info": ConfigRecord(info)})
        check_reply(reply, dp=fed.dp)
        return Message(reply, reply_to=msg)

    def evaluate(msg: Message, context: Context) -> Message:
        fed = _config(base, context)
        torch.set_num_threads(1)
        node_config = dict(context.node_config)
        site = task.node_site(fed, node_config)
        split = str(msg.content.config_records["config"].get("split", "val"))
        allowed = task.allowed_splits(fed, node_config)
        if split not in allowed:
            raise WorkbenchError(f"node {site.name}: evaluating the {split!r} split is not allowed here "
                                 f"(eval-splits: {', '.join(allowed)})")
        model = task.build(fed)
        task.load_state(model, msg.content.array_records["arrays"].to_torch_state_dict())
        data = task.node_data(fed, site, model, split)
        res = task.evaluate(model, data)
        cfg = msg.content.config_records["config"]
        server_round = int(cast(int, cfg.get("server-round", 0))) + int(cast(int, cfg.get("round-offset", 0)))
        info = ConfigRecord({"site": site.name, "split": split})
        if fed.dp:  # computed and kept here: the node's operator sees them, the server hears only that they exist
            task.log_local_metrics(task.state_dir(fed, node_config, site), {
                "run": str(cfg.get("run-tag") or fed.run_tag or context.run_id), "round": server_round, "split": split, "n": len(data), **res})
            reply = RecordDict({"metrics": MetricRecord({"kept-local": 1.0}), "info": info})
        else:
            reply = RecordDict({"metrics": MetricRecord({"num-examples": len(data), "auroc": res["auroc"],
                                                         "loss": res["loss"]}), "info": info})
        check_reply(reply, dp=fed.dp)
        return Message(reply, reply_to=msg)

    app.train()(_guarded(train, base))
    app.evaluate()(_guarded(evaluate, base))
    return app


app = make_client_app()
