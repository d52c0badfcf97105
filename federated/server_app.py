"""The coordinating ``ServerApp``: a Flower strategy over the hospital nodes, a checkpoint per round, a model folder.

``RecordingStrategy`` wraps the chosen strategy (FedAvg, FedProx, FedAdam, FedTrimmedAvg, Krum; optionally inside
Flower's server-side DP clipping wrapper) and keeps, per round, what each node reported: cases, loss, epsilon,
a refusal, the bytes that went each way. Refusals (a node whose privacy budget is spent) are set aside before
aggregation, so the round goes on with the others. Flower's own ``Strategy.start`` runs the rounds; its
``evaluate_fn``, called after every round, is ``AfterRound``: the global weights are saved atomically
(``RUN/checkpoint``) with the round log (``RUN/rounds.json``, no absolute machine path) and its plot
(``RUN/rounds.png``, ``workbench.runtime.rounds``); at the end the final model is written as a model folder
(``RUN/model``).

Under DP the nodes keep their evaluation metrics (``federated.egress``): the round log then holds, per round and
node, only what the node released (the update's norm, the noise, epsilon, its DP case count), and ``rounds.json``
carries a ``privacy`` block saying what left each node and whether its randomness was secret. Without DP it says
the run is not private and lists what left.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
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
from workbench.atomic import atomic_write
from workbench.errors import WorkbenchError
from workbench.jsonout import jsonable, write_json
from workbench.runtime.rounds import ROUNDS_FILE, write_rounds_png


def array_bytes(arrays: ArrayRecord | None) -> int:
    return int(sum(len(a.data) for a in arrays.values())) if arrays is not None else 0


class RecordingStrategy(Strategy):
    """Delegates to ``inner``; records each node's reply per round and sets refusals aside.

    ``last_aggregate`` is the latest round's aggregate, None when no node's update was aggregated (every node
    refused or failed): ``evaluate_fn`` is handed the current weights either way, and must not checkpoint or
    average the previous round's weights again as if they were new."""

    def __init__(self, inner: Strategy, dp: bool = False, expected_nodes: int = 0, min_nodes: int = 1,
                 node_wait_s: float = 0.0) -> None:
        self.inner = inner
        self.dp = dp
        self.expected_nodes, self.min_nodes, self.node_wait_s = expected_nodes, min_nodes, node_wait_s
        self.waits: list[dict[str, Any]] = []  # rounds that started without every node, and why
        self.rounds: list[dict[str, Any]] = []
        self.last_aggregate: ArrayRecord | None = None
        self._down = 0
        self._sent: ArrayRecord | None = None  # the weights this round's nodes started from (their updates' base)
        self.offset = 0  # rounds completed before a resumed run: Flower counts from 1 again, the record does not

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._down = array_bytes(arrays)
        self._sent = arrays
        self.wait_for_nodes(server_round, grid)
        return self.inner.configure_train(server_round, arrays, config, _NodeSnapshot(grid))  # type: ignore[arg-type]

    def wait_for_nodes(self, server_round: int, grid: Grid) -> int:
        """Wait at most ``node_wait_s`` for every node seen at the start; go on with ``min_nodes`` or more, else
        fail the round by name (Flower's own sampling would wait for the missing nodes forever)."""
        import time

        deadline = time.monotonic() + self.node_wait_s
        while (n := len(list(grid.get_node_ids()))) < self.expected_nodes and time.monotonic() < deadline:
            time.sleep(1.0)
        if n < self.min_nodes:
            raise WorkbenchError(f"round {server_round + self.offset}: only {n} node(s) connected after waiting "
                                 f"{self.node_wait_s:.0f} s (min-nodes {self.min_nodes}); the run stops here, its last "
                                 "round is checkpointed: start the missing nodes and resume")
        if n < self.expected_nodes:
            self.waits.append({"round": server_round + self.offset, "connected": n, "expected": self.expected_nodes,
                               "waited_s": self.node_wait_s})
        return n

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
        self._screen(nodes, kept)
        arrays, metrics = self.inner.aggregate_train(server_round, kept) if kept else (None, None)
        self.last_aggregate = arrays
        self.rounds.append({"round": server_round + self.offset, "nodes": sorted(nodes, key=lambda r: str(r.get("site", ""))),
                            "trained": len(kept), "refused": sum(1 for r in nodes if "refused" in r)})
        return arrays, metrics

    def _screen(self, nodes: list[dict[str, Any]], kept: list[Message]) -> None:
        """Each kept update's norm, ratio and direction beside the others' (``federated.update_screen``), into
        its node's row."""
        if self._sent is None or not kept:
            return
        from federated.update_screen import screen_updates, update_vector

        ids = [m.metadata.src_node_id for m in kept]
        found = screen_updates({i: update_vector(self._sent, m.content.array_records["arrays"])
                                for i, m in zip(ids, kept, strict=True)})
        for row in nodes:
            row.update(found.get(row["node_id"], {}))
        from federated.robust import NormBoundedFedAvg

        if isinstance(self.inner, NormBoundedFedAvg):  # it aggregates by the same screen: hand it over
            self.inner.screen = found

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, _NodeSnapshot(grid))  # type: ignore[arg-type]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = [m for m in replies if not m.has_error()]
        per_site = {}
        for m in replies:
            site = dict(m.content.config_records["info"]).get("site", str(m.metadata.src_node_id))
            per_site[str(site)] = {k: float(cast(float, v)) for k, v in m.content.metric_records["metrics"].items()}
        # under DP the nodes send no metric to aggregate (they keep theirs); nothing to weigh
        metrics = self.inner.aggregate_evaluate(server_round, replies) if replies and not self.dp else None
        if self.rounds and self.rounds[-1]["round"] == server_round + self.offset:
            self.rounds[-1]["evaluate"] = per_site
            if metrics is not None:
                self.rounds[-1]["evaluate_mean"] = {k: float(v) for k, v in metrics.items()}  # type: ignore[arg-type]
        return metrics

    def summary(self) -> None:
        self.inner.summary()


SERVER_AUDIT = "server_audit.jsonl"


class AfterRound:
    """``Strategy.start``'s ``evaluate_fn``, which Flower calls once before the first round (round 0: nothing to
    do) and after every round: the checkpoint, ``rounds.json`` and its plot, the progress bar, and the last
    ``final-average`` rounds' global weights. It evaluates nothing centrally (the server holds no data), so it
    returns None."""

    def __init__(self, recorder: RecordingStrategy, fed: FedConfig, out: Path | None) -> None:
        self.recorder, self.fed, self.out = recorder, fed, out
        self.resumed: list[dict[str, Any]] | None = None  # where each resume picked up (rounds.json says so)
        self.ledger_tag = ""  # the nodes' ledgers' name for this run, kept across resumes
        self.history: list[ArrayRecord] = []  # the last final-average aggregates
        self._bar = None
        if fed.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=fed.num_server_rounds, initial=recorder.offset, desc="federated rounds",
                             unit="round")

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0 or not self.recorder.rounds:
            return None
        agg = self.recorder.last_aggregate
        if agg is not None:
            self.history = [*self.history, agg][-self.fed.final_average:]
        if self.out is not None:
            self.audit(self.recorder.rounds[-1])
            if agg is not None:
                _save_checkpoint(self.out, agg, server_round + self.recorder.offset)
            self.write(final=False)
            write_rounds_png(self.recorder.rounds, self.out / "rounds.png")
        if self._bar is not None:
            row = self.recorder.rounds[-1]
            self._bar.set_postfix({"trained": row.get("trained"), "refused": row.get("refused"),
                                   "val_auroc": round(row.get("evaluate_mean", {}).get("auroc", math.nan), 3)})
            self._bar.update(1)
        return None

    def audit(self, row: dict[str, Any]) -> None:
        """``RUN/server_audit.jsonl`` (hash-chained, ``federated.audit``): each round's update norms by site, and
        the updates the screen flagged with the reason. Site names and numbers only."""
        from federated import audit

        assert self.out is not None
        nodes = [n for n in row["nodes"] if "update_norm" in n]
        audit.append(self.out / SERVER_AUDIT, jsonable({
            "round": row["round"], "event": "updates",
            "update_norms": {str(n.get("site") or n["node_id"]): n["update_norm"] for n in nodes},
            "anomalous": {str(n.get("site") or n["node_id"]): n["why"] for n in nodes if n.get("anomalous")}}))

    def write(self, final: bool) -> None:
        """``RUN/rounds.json``: the config (paths relative to the RUN), the privacy statement, every round."""
        if self.out is None:
            return
        body: dict[str, Any] = {"config": self.fed.to_record(self.out),
                                "privacy": privacy_statement(self.fed, self.recorder.rounds),
                                "ledger_run": self.ledger_tag, "rounds": self.recorder.rounds}
        if self.resumed is not None:
            body["resumed"] = self.resumed
        if self.recorder.waits:
            body["short_rounds"] = self.recorder.waits
        write_json(self.out / ROUNDS_FILE, {**body, "final": True} if final else body)

    def final_arrays(self, last: ArrayRecord) -> ArrayRecord:
        """With ``final-average`` k > 1, the mean of the last k rounds' global weights: post-processing of what
        the nodes released, so it costs no privacy, and under DP it averages the last rounds' noise away."""
        return average_arrays(self.history) if len(self.history) > 1 else last

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _NodeSnapshot:
    """The grid with its node list read once. Flower's sampling sizes the sample from one ``get_node_ids`` call and
    then waits until a second call lists that many: a node dying between the two made it wait forever. On one
    snapshot a dead node is sent its message and its reply fails within ``round-timeout-s``."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self._ids = list(grid.get_node_ids())

    def get_node_ids(self) -> list[int]:
        return list(self._ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def make_strategy(fed: FedConfig, n_nodes: int) -> Strategy:
    """The configured strategy; every node trains and evaluates each round; weights by ``num-examples`` (cases)."""
    # min_available_nodes: never more than the connected nodes the recorder already waited for (bounded), so a dead
    # node does not make Flower's sampling wait for it forever
    common: dict[str, Any] = {"fraction_train": 1.0, "fraction_evaluate": fed.fraction_evaluate, "min_train_nodes": 1, "min_evaluate_nodes": 1,
              "min_available_nodes": min(fed.min_nodes, n_nodes)}
    strategy: Strategy
    if fed.strategy == "fedavg":
        strategy = FedAvg(**common)
    elif fed.strategy == "fedprox":
        strategy = FedProx(**common, proximal_mu=fed.proximal_mu)
    elif fed.strategy == "fedadam":
        strategy = FedAdam(**common, eta=fed.server_lr, eta_l=fed.lr)
    elif fed.strategy == "fedtrimmedavg":
        if int(fed.trim_beta * n_nodes) < 1:
            raise WorkbenchError(f"strategy fedtrimmedavg with trim-beta {fed.trim_beta} trims no node of {n_nodes}: "
                                 f"set trim-beta to at least {1 / n_nodes:.2f} (1/nodes) to bound one bad node")
        strategy = FedTrimmedAvg(**common, beta=fed.trim_beta)
    elif fed.strategy == "normbounded":
        from federated.robust import NormBoundedFedAvg

        strategy = NormBoundedFedAvg(**common)
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
    with atomic_write(ck / "global.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in arrays.to_torch_state_dict().items()}, str(tmp),
                  metadata={"round": str(server_round)})


def make_server_app(base: FedConfig | None = None, n_nodes: int | None = None) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        fed = FedConfig.from_run_config(dict(context.run_config), base)
        nodes = n_nodes or len(list(grid.get_node_ids()))
        model = task.build(fed)
        names = task.exchanged_names(model, fed.federate)
        out = Path(fed.out_dir) if fed.out_dir else None

        recorder = RecordingStrategy(make_strategy(fed, nodes), fed.dp, expected_nodes=nodes,
                                     min_nodes=min(fed.min_nodes, nodes), node_wait_s=fed.node_wait_s)
        start = ArrayRecord(task.state_of(model, names))
        resumed, ledger_tag = None, fed.run_tag or str(context.run_id)
        if fed.resume_from:
            start, recorder.rounds, resumed = resume_state(Path(fed.resume_from), names)
            recorder.offset = len(recorder.rounds)
            earlier = json.loads((Path(fed.resume_from) / ROUNDS_FILE).read_text()).get("ledger_run")
            ledger_tag = fed.run_tag or earlier or ledger_tag
        after_round = AfterRound(recorder, fed, out)
        after_round.resumed, after_round.ledger_tag = resumed, ledger_tag
        # a resumed run is the same run to the nodes' ledgers: the same name and the rounds counted on, so its
        # spend composes with the rounds before the resume against one run target (never a fresh target)
        ledger = {"run-tag": ledger_tag, "round-offset": recorder.offset}
        left = fed.num_server_rounds - recorder.offset
        if left < 1:
            raise WorkbenchError(f"{fed.resume_from}: already has {recorder.offset} of {fed.num_server_rounds} rounds; "
                                 "nothing to resume")
        result = recorder.start(
            grid, start, num_rounds=left, timeout=fed.round_timeout_s,
            train_config=ConfigRecord({"proximal-mu": fed.proximal_mu if fed.strategy == "fedprox" else 0.0, **ledger}),
            evaluate_config=ConfigRecord({"split": "val", **ledger}), evaluate_fn=after_round)
        after_round.close()
        if out is not None:
            task.load_state(model, after_round.final_arrays(result.arrays).to_torch_state_dict())
            from workbench.models.model import save_model

            save_model(model, out / "model")
            after_round.write(final=True)

    return app


def resume_state(run: Path, names: list[str]) -> tuple[ArrayRecord, list[dict[str, Any]], list[dict[str, Any]]]:
    """A RUN's last checkpoint and the rounds it completed (those up to the checkpoint's round; a round that did
    not finish is run again), and the resume record to keep in ``rounds.json``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    ck = run / "checkpoint" / "global.safetensors"
    if not ck.is_file():
        raise WorkbenchError(f"{run}: no checkpoint to resume from ({ck}); start a fresh run without --resume")
    with safe_open(str(ck), "pt") as f:
        done = int((f.metadata() or {}).get("round", 0))
    state = load_file(str(ck))
    missing = sorted(set(names) - set(state))
    if missing:
        raise WorkbenchError(f"{ck}: does not hold this run's exchanged weights ({missing[:3]}...): another model")
    record = json.loads((run / ROUNDS_FILE).read_text()) if (run / ROUNDS_FILE).is_file() else {}
    rounds = [r for r in record.get("rounds", []) if int(r.get("round", 0)) <= done]
    earlier = list(record.get("resumed", []))
    return (ArrayRecord({k: state[k] for k in names}), rounds,
            [*earlier, {"after_round": done, "from": "checkpoint/global.safetensors"}])


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


app = make_server_app()

__all__ = ["AfterRound", "RecordingStrategy", "app", "make_server_app", "make_strategy", "privacy_statement"]
