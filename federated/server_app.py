"""The coordinating ``ServerApp``: a Flower strategy over the hospital nodes, a checkpoint per round, a model folder.

``RecordingStrategy`` wraps the chosen strategy (FedAvg, FedProx, FedAdam, FedTrimmedAvg, Krum; optionally inside
Flower's server-side DP clipping wrapper) and keeps, per round, what each node reported: cases, loss, epsilon,
a refusal, the bytes that went each way. Refusals (a node whose privacy budget is spent) are set aside before
aggregation, so the round goes on with the others. After every round the global weights are saved atomically
(``RUN/checkpoint``) with the round log (``RUN/rounds.json``) and its plot (``RUN/rounds.png``); at the end the
final model is written as a model folder (``RUN/model``).

Under DP the nodes keep their evaluation metrics (``federated.egress``): the round log then holds, per round and
node, only what the node released (the update's norm, the noise, epsilon, its DP case count), and ``rounds.json``
carries a ``privacy`` block saying what left each node and whether its randomness was secret. Without DP it says
the run is not private and lists what left.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
    FedTrimmedAvg,
    Krum,
    Strategy,
)
from safetensors.torch import save_file

from federated import task
from federated.config import FedConfig
from workbench.jsonout import write_json


def array_bytes(arrays: ArrayRecord | None) -> int:
    return int(sum(len(a.data) for a in arrays.values())) if arrays is not None else 0


class RecordingStrategy(Strategy):
    """Delegates to ``inner``; records each node's reply per round and sets refusals aside."""

    def __init__(self, inner: Strategy, on_round: Callable[[dict[str, Any], ArrayRecord | None], None] | None = None,
                 total_rounds: int = 0, progress: bool = True, dp: bool = False) -> None:
        self.inner = inner
        self.dp = dp
        self.on_round = on_round
        self.rounds: list[dict[str, Any]] = []
        self._down = 0
        self._bar = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_rounds, desc="federated rounds", unit="round")

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._down = array_bytes(arrays)
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        nodes, kept = [], []
        for m in replies:
            if m.has_error():
                nodes.append({"node_id": m.metadata.src_node_id, "error": str(m.error.reason)[:500]})
                continue
            info = dict(m.content.config_records["info"]) if "info" in m.content.config_records else {}
            row: dict[str, Any] = {"node_id": m.metadata.src_node_id, "site": info.get("site", "")}
            if info.get("refusal"):
                row["refused"] = info["refusal"]
            else:
                row.update({k: float(cast(float, v)) for k, v in m.content.metric_records["metrics"].items()})
                row["bytes_down"] = self._down
                row["bytes_up"] = array_bytes(m.content.array_records["arrays"])
                kept.append(m)
            nodes.append(row)
        arrays, metrics = self.inner.aggregate_train(server_round, kept) if kept else (None, None)
        self.rounds.append({"round": server_round, "nodes": sorted(nodes, key=lambda r: str(r.get("site", ""))),
                            "trained": len(kept), "refused": sum(1 for r in nodes if "refused" in r)})
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = [m for m in replies if not m.has_error()]
        per_site = {}
        for m in replies:
            site = dict(m.content.config_records["info"]).get("site", str(m.metadata.src_node_id))
            per_site[str(site)] = {k: float(cast(float, v)) for k, v in m.content.metric_records["metrics"].items()}
        # under DP the nodes send no metric to aggregate (they keep theirs); nothing to weigh
        metrics = self.inner.aggregate_evaluate(server_round, replies) if replies and not self.dp else None
        if self.rounds and self.rounds[-1]["round"] == server_round:
            self.rounds[-1]["evaluate"] = per_site
            if metrics is not None:
                self.rounds[-1]["evaluate_mean"] = {k: float(v) for k, v in metrics.items()}  # type: ignore[arg-type]
        return metrics

    def after_round(self, arrays: ArrayRecord | None) -> None:
        if self.on_round is not None and self.rounds:
            self.on_round(self.rounds[-1], arrays)
        if self._bar is not None:
            row = self.rounds[-1] if self.rounds else {}
            self._bar.set_postfix({"trained": row.get("trained"), "refused": row.get("refused"),
                                   "val_auroc": round(row.get("evaluate_mean", {}).get("auroc", math.nan), 3)})
            self._bar.update(1)

    def summary(self) -> None:
        self.inner.summary()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def make_strategy(fed: FedConfig, n_nodes: int) -> Strategy:
    """The configured strategy; every node trains and evaluates each round; weights by ``num-examples`` (cases)."""
    common: dict[str, Any] = {"fraction_train": 1.0, "fraction_evaluate": 1.0, "min_train_nodes": 1, "min_evaluate_nodes": 1,
              "min_available_nodes": n_nodes}
    strategy: Strategy
    if fed.strategy == "fedavg":
        strategy = FedAvg(**common)
    elif fed.strategy == "fedprox":
        strategy = FedProx(**common, proximal_mu=fed.proximal_mu)
    elif fed.strategy == "fedadam":
        strategy = FedAdam(**common, eta=fed.server_lr, eta_l=fed.lr)
    elif fed.strategy == "fedtrimmedavg":
        strategy = FedTrimmedAvg(**common, beta=fed.trim_beta)
    else:
        strategy = Krum(**common, num_malicious_nodes=0)
    if fed.central_dp:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, noise_multiplier=fed.central_dp_noise, clipping_norm=fed.central_dp_clip,
            num_sampled_clients=n_nodes)
    return strategy


def _save_checkpoint(out: Path, arrays: ArrayRecord, server_round: int) -> None:
    ck = out / "checkpoint"
    ck.mkdir(parents=True, exist_ok=True)
    tmp = ck / ".global.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in arrays.to_torch_state_dict().items()}, str(tmp),
              metadata={"round": str(server_round)})
    os.replace(tmp, ck / "global.safetensors")


def plot_rounds(rounds: list[dict[str, Any]], path: Path) -> None:
    """Per-round validation AUROC per site and epsilon spent per node (when DP is on)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = sorted({s for r in rounds for s, m in r.get("evaluate", {}).items() if "auroc" in m})
    has_eps = any(n.get("epsilon_total") for r in rounds for n in r["nodes"])
    fig, axes = plt.subplots(1, 2 if has_eps else 1, figsize=(9 if has_eps else 5, 3.2), dpi=110, squeeze=False)
    ax = axes[0][0]
    for s in sites:
        ax.plot([r["round"] for r in rounds], [r.get("evaluate", {}).get(s, {}).get("auroc", math.nan) for r in rounds],
                marker="o", label=s)
    ax.set_xlabel("round")
    ax.set_ylabel("val AUROC")
    ax.set_title("global model on each site's val split")
    if sites:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "DP run: each node keeps its val\nmetrics (local_metrics.jsonl)", ha="center",
                va="center", transform=ax.transAxes, fontsize=8)
    if has_eps:
        ax2 = axes[0][1]
        node_sites = sorted({n.get("site", "") for r in rounds for n in r["nodes"]})
        for s in node_sites:
            ax2.plot([r["round"] for r in rounds],
                     [next((n.get("epsilon_total", math.nan) for n in r["nodes"] if n.get("site") == s), math.nan)
                      for r in rounds], marker="o", label=s)
        ax2.set_xlabel("round")
        ax2.set_ylabel("epsilon spent (lifetime)")
        seeded = any(n.get("secure_randomness") == 0.0 for r in rounds for n in r["nodes"])
        ax2.set_title("privacy spent per node" + (" (NOT PRIVATE: seeded)" if seeded else ""))
        ax2.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def make_server_app(base: FedConfig | None = None, n_nodes: int | None = None) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        fed = FedConfig.from_run_config(dict(context.run_config), base)
        nodes = n_nodes or len(list(grid.get_node_ids()))
        model = task.build(fed)
        names = task.exchanged_names(model, fed.federate)
        out = Path(fed.out_dir) if fed.out_dir else None

        def on_round(row: dict[str, Any], arrays: ArrayRecord | None) -> None:
            if out is None:
                return
            if arrays is not None:
                _save_checkpoint(out, arrays, row["round"])
            write_json(out / "rounds.json", {"config": fed.to_run_config(), "privacy": privacy_statement(fed, recorder.rounds),
                                             "rounds": recorder.rounds})
            plot_rounds(recorder.rounds, out / "rounds.png")

        recorder = RecordingStrategy(make_strategy(fed, nodes), on_round, fed.num_server_rounds, fed.progress, fed.dp)
        train_config = ConfigRecord({"proximal-mu": fed.proximal_mu if fed.strategy == "fedprox" else 0.0})
        result = _start(recorder, grid, ArrayRecord(task.state_of(model, names)), fed.num_server_rounds, train_config,
                        fed.final_average)
        recorder.close()
        if out is not None:
            task.load_state(model, result.arrays.to_torch_state_dict())
            from workbench.models.model import save_model

            save_model(model, out / "model")
            write_json(out / "rounds.json", {"config": fed.to_run_config(), "privacy": privacy_statement(fed, recorder.rounds),
                                             "rounds": recorder.rounds, "final": True})

    return app


def privacy_statement(fed: FedConfig, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """What left each node, said plainly: the run's privacy mode and, under DP, whether the randomness was secret."""
    from federated.egress import DP_EGRESS, PLAIN_EGRESS
    from workbench.runtime.privacy import NOT_PRIVATE

    if not fed.dp:
        return {"private": False, "mode": "no DP: not private",
                "left_each_node": sorted(PLAIN_EGRESS - {"kept-local", "refusal"}),
                "note": "model weights, case counts, train loss and per-round val AUROC and loss left every node "
                        "unprotected; the final calibration may pool val predictions of all sites"}
    flags = [n.get("secure_randomness") for r in rounds for n in r["nodes"] if "secure_randomness" in n]
    secure = all(f == 1.0 for f in flags) if flags else fed.dp_secure
    return {"private": secure, "mode": "record-level DP at each node" if secure else NOT_PRIVATE,
            "secure_randomness": secure, "left_each_node": sorted(DP_EGRESS),
            "note": "each node's val metrics, calibration and conformal thresholds stay at the node"}


def average_arrays(history: list[ArrayRecord]) -> ArrayRecord:
    """The element-wise mean of several rounds' global weights (integer buffers: the last round's)."""
    states = [a.to_torch_state_dict() for a in history]
    last = states[-1]
    return ArrayRecord({k: (torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype)
                            if v.is_floating_point() else v) for k, v in last.items()})


def _start(recorder: RecordingStrategy, grid: Grid, arrays: ArrayRecord, rounds: int, train_config: ConfigRecord,  # noqa: ANN202
           final_average: int = 1):
    """``Strategy.start`` with a hook after each round (its own loop has none): one round at a time. With
    ``final_average`` k > 1 the result is the mean of the last k rounds' global weights: post-processing of
    what the nodes released, so it costs no privacy, and under DP it averages the last rounds' noise away."""
    from flwr.serverapp.strategy import Result

    result = Result(arrays=arrays)
    current = arrays
    history: list[ArrayRecord] = []
    for r in range(1, rounds + 1):
        replies = grid.send_and_receive(recorder.configure_train(r, current, ConfigRecord(dict(train_config)), grid),
                                        timeout=3600)
        agg, metrics = recorder.aggregate_train(r, replies)
        if agg is not None:
            current = agg
            result.arrays = agg
            history = [*history, agg][-final_average:]
        if metrics is not None:
            result.train_metrics_clientapp[r] = metrics
        replies = grid.send_and_receive(recorder.configure_evaluate(r, current, ConfigRecord({"split": "val"}), grid),
                                        timeout=3600)
        ev = recorder.aggregate_evaluate(r, replies)
        if ev is not None:
            result.evaluate_metrics_clientapp[r] = ev
        recorder.after_round(agg)
    if len(history) > 1:
        result.arrays = average_arrays(history)
    return result


app = make_server_app()

__all__ = ["RecordingStrategy", "app", "make_server_app", "make_strategy", "plot_rounds", "privacy_statement"]
