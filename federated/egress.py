"""What a node may send, checked on the way out; and a mod that records every message a node sends.

In DP mode (``dp = true``) a node's replies carry the model update (DP-SGD, in its ledger) and the scalars of
``DP_EGRESS`` only: each either charged to the node's ledger through a DP mechanism, or computed from no private
record. ``data_cards/federated_privacy.md`` prints this table; a test reads the card and the table back and
checks that every message a DP federation's nodes sent holds nothing else. ``check_reply`` refuses a reply that
would carry anything more (a programming error, caught before it leaves).

Without DP, a node may also send its train loss, throughput and per-round val AUROC and loss (``PLAIN_EGRESS``);
the run then says it is not private (``workbench federate``'s summary and ``rounds.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, RecordDict

from workbench.errors import WorkbenchError

# key -> (what it is, mechanism, ledger entry). ``ledger entry``: the kind of release in the node's ledger that
# covers it, or "none" when it is computed from no private record.
DP_EGRESS: dict[str, tuple[str, str, str]] = {
    "arrays": ("model weights after the round's DP-SGD (the exchanged tensors)",
               "DP-SGD: Poisson sampling, per-case clipping, Gaussian noise, from OS entropy", "dp-sgd"),
    "num-examples": ("the node's training case count plus Gaussian noise (std dp-count-noise), released once per run "
                     "and reused: FedAvg's weight and the public divisor of the node's DP-SGD sum",
                     "Gaussian mechanism, sensitivity 1", "count"),
    "update_norm": ("L2 norm of (sent - received) weights", "post-processing of the DP-SGD release", "dp-sgd"),
    "noise_multiplier": ("the round's planned noise multiplier", "from the config and the ledger's history", "none"),
    "steps": ("DP-SGD steps in the round (fixed by the config)", "config", "none"),
    "epsilon_run": ("epsilon this run has spent (Opacus RDP)", "from the ledger's history", "none"),
    "epsilon_total": ("epsilon the node has spent in its lifetime", "from the ledger's history", "none"),
    "dp_trainable_params": ("how many weights DP-SGD trains", "model structure", "none"),
    "secure_randomness": ("1 when the draws and noise came from OS entropy, 0 when seeded (not private)", "config",
                          "none"),
    "kept-local": ("evaluation reply: 1, the metrics stay at the node", "constant", "none"),
    "site": ("the node's name", "node configuration", "none"),
    "split": ("the split the server asked to evaluate", "the server's request", "none"),
    "refusal": ("why the node refuses (its budget and spend)", "from the ledger's history", "none"),
}
PLAIN_EGRESS = {*DP_EGRESS, "train_loss", "samples_per_s", "auroc", "loss"}
ARRAYS = "arrays"


def reply_keys(content: RecordDict) -> dict[str, list[str]]:
    """{record kind: keys} of a reply: array records by name, metric and config records by their keys."""
    return {"arrays": [k for k in content.array_records],
            "metrics": [k for r in content.metric_records.values() for k in r],
            "configs": [k for r in content.config_records.values() for k in r]}


def check_reply(content: RecordDict, dp: bool) -> None:
    """Refuse a reply that carries a key the mode does not allow (DP: the ``DP_EGRESS`` table)."""
    allowed = DP_EGRESS if dp else PLAIN_EGRESS
    keys = reply_keys(content)
    bad = [k for k in keys["metrics"] + keys["configs"] if k not in allowed]
    bad += [k for k in keys["arrays"] if k != ARRAYS]
    if bad:
        raise WorkbenchError(f"egress guard: {'DP' if dp else 'plain'} mode does not allow sending {sorted(set(bad))}")


def capture_mod(folder: str | Path) -> Callable[[Message, Context, Callable[[Message, Context], Message]], Message]:
    """A client mod that appends every reply the node sends (record names, metric and config values, array
    names and shapes, errors) to ``folder/<pid>.jsonl``: what an auditor (or a test) reads to see what left."""
    folder = Path(folder)

    def mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        reply = call_next(msg, context)
        row: dict[str, Any] = {"type": msg.metadata.message_type, "node_config": dict(context.node_config)}
        if reply.has_error():
            row["error"] = {"code": reply.error.code, "reason": reply.error.reason}
        else:
            c = reply.content
            row["arrays"] = {name: {k: list(a.shape) for k, a in rec.items()} for name, rec in c.array_records.items()}
            row["metrics"] = {name: dict(rec) for name, rec in c.metric_records.items()}
            row["configs"] = {name: dict(rec) for name, rec in c.config_records.items()}
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=str) + "\n")
        return reply

    return mod


def read_capture(folder: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted(Path(folder).glob("*.jsonl"))
            for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["ARRAYS", "DP_EGRESS", "PLAIN_EGRESS", "capture_mod", "check_reply", "read_capture", "reply_keys"]
