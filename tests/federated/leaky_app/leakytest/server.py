"""One training round to every node that connects within 60 s; each reply (or error) written to ``out``."""

import json
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    want, deadline = int(context.run_config["nodes"]), time.monotonic() + 60
    ids = list(grid.get_node_ids())
    while len(ids) < want and time.monotonic() < deadline:
        time.sleep(1)
        ids = list(grid.get_node_ids())
    content = RecordDict({"arrays": ArrayRecord([np.zeros(3, dtype=np.float32)]),
                          "config": ConfigRecord({"server-round": 1})})
    replies = grid.send_and_receive([Message(content, dst_node_id=i, message_type="train") for i in ids], timeout=120)
    rows = []
    for r in replies:
        row = {"node": r.metadata.src_node_id}
        if r.has_error():
            row["error"] = {"code": r.error.code, "reason": r.error.reason}
        else:
            row["metrics"] = {k: v for rec in r.content.metric_records.values() for k, v in rec.items()}
        rows.append(row)
    Path(str(context.run_config["out"])).write_text(json.dumps({"nodes": len(ids), "replies": rows}))
