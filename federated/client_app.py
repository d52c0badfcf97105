"""The hospital node's ``ClientApp``: train and evaluate on its own site's cases, through Flower's Message API.

The node is told which site it is by ``node_config`` (``site-dir`` on a real SuperNode, ``partition-id`` in a
simulation) and keeps its state there: the privacy ledger, the audit log. Under DP it asks its ledger for this
round's noise; when the budget is spent it refuses with a reason and sends no weights (the server carries on
without it). What leaves the node: weights, case counts, metrics, epsilon, the site name. No case id, no note,
no pixel.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federated import audit, task
from federated.config import FedConfig
from federated.ledger import BudgetExhausted, PrivacyLedger

METRIC_KEYS = ("num-examples", "train_loss", "samples_per_s", "noise_multiplier", "steps", "epsilon_run",
               "epsilon_total", "dp_trainable_params", "update_norm")


def _config(base: FedConfig | None, context: Context) -> FedConfig:
    return FedConfig.from_run_config(dict(context.run_config), base)


def make_client_app(base: FedConfig | None = None) -> ClientApp:
    """A ClientApp bound to ``base`` (``workbench federate``), overridden by the run config (``flwr run``)."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        fed = _config(base, context)
        torch.set_num_threads(1)
        site = task.node_site(fed, dict(context.node_config))
        state = task.state_dir(fed, dict(context.node_config), site)
        train_cfg = msg.content.config_records["config"]
        server_round = int(cast(int, train_cfg["server-round"]))
        received = msg.content.array_records["arrays"].to_torch_state_dict()
        model = task.build(fed)
        task.load_state(model, received)
        data = task.node_data(fed, site, model, "train")
        info: dict[str, Any] = {"site": site.name, "refusal": ""}
        metrics: dict[str, Any] = dict.fromkeys(METRIC_KEYS, 0.0)
        metrics["num-examples"] = len(data)
        if fed.dp:
            ledger = PrivacyLedger.open(state / "privacy_ledger.json", site.name, fed.dp_budget, fed.dp_delta)
            run_id = fed.run_tag or str(context.run_id)
            try:
                metrics.update(task.train_dp(model, data, fed, ledger, run_id, server_round))
            except BudgetExhausted as e:
                info["refusal"] = str(e)
                audit.append(state / "audit.jsonl", {"round": server_round, "site": site.name,
                                                     "received": task.state_digest(received), "refused": str(e)})
                return Message(RecordDict({"info": ConfigRecord(info)}), reply_to=msg)
        else:
            metrics.update(task.train_plain(model, data, fed, server_round,
                                            float(cast(float, train_cfg.get("proximal-mu", 0.0)))))
        sent = task.state_of(model, list(received.keys()))
        norm = float(torch.stack([((sent[k].float() - received[k].float()) ** 2).sum() for k in sent]).sum().sqrt())
        metrics["update_norm"] = norm
        audit.append(state / "audit.jsonl", {
            "round": server_round, "site": site.name, "received": task.state_digest(received),
            "sent": task.state_digest(sent), "update_norm": norm,
            "epsilon_total": metrics["epsilon_total"] if fed.dp else None})
        return Message(RecordDict({"arrays": ArrayRecord(sent), "metrics": MetricRecord(metrics),
                                   "info": ConfigRecord(info)}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        fed = _config(base, context)
        torch.set_num_threads(1)
        site = task.node_site(fed, dict(context.node_config))
        split = str(msg.content.config_records["config"].get("split", "val"))
        model = task.build(fed)
        task.load_state(model, msg.content.array_records["arrays"].to_torch_state_dict())
        data = task.node_data(fed, site, model, split)
        res = task.evaluate(model, data)
        metrics: dict[str, Any] = {"num-examples": len(data), "auroc": res["auroc"], "loss": res["loss"]}
        return Message(RecordDict({"metrics": MetricRecord(metrics),
                                   "info": ConfigRecord({"site": site.name, "split": split})}), reply_to=msg)

    return app


app = make_client_app()
