"""The federated-run monitor: rounds done, per-round metrics per site, epsilon spent per node.

It reads the RUN's ``rounds.json`` (written after every round) and ``federation.json`` (at the end), so the
same widget follows a running federation (``refresh()``) and shows a finished one. A deployment run (``workbench
server run`` / ``workbench poc``) has no ``federation.json``: the coordinator knows only what the nodes released,
so epsilon per node is each node's last reported ``epsilon_run`` / ``epsilon_total`` (scalars of the privacy
card's table), and with ``nodes`` (a function listing the SuperLink's nodes, e.g. ``federated.deploy.nodes`` bound
to the coordinator's folder: the notebook passes it, the UI layer does not import the federation) the node list
shows who is online. The plot is the server's own
(``workbench.runtime.rounds``): the widget and ``RUN/rounds.png`` never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.runtime.rounds import read_rounds, rounds_png


class RunMonitor:
    """``RunMonitor(run).widget``; ``refresh()`` re-reads the RUN."""

    def __init__(self, run: str | Path, total_rounds: int | None = None,
                 nodes: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        import ipywidgets as w

        self.run = Path(run)
        self.list_nodes = nodes
        fed = self.run / "federation.json"
        rounds_file = self.run / "rounds.json"
        cfg = json.loads((fed if fed.is_file() else rounds_file).read_text()).get("config", {}) \
            if (fed.is_file() or rounds_file.is_file()) else {}
        self.total = total_rounds or int(cfg.get("num-server-rounds", cfg.get("num_server_rounds", 0)) or 0)
        self.progress = w.IntProgress(min=0, max=max(self.total, 1), description="rounds")
        self.plot = w.Image(format="png")
        self.table = w.HTML()
        self.nodes = w.HTML()
        self.widget = w.VBox([self.progress, self.plot, self.table, self.nodes])
        self.refresh()

    def refresh(self) -> None:
        rounds = read_rounds(self.run)
        done = max((r["round"] for r in rounds), default=0)
        self.progress.max = max(self.total, done, 1)
        self.progress.value = done
        self.plot.value = rounds_png(rounds)
        fed = self.run / "federation.json"
        eps = json.loads(fed.read_text()).get("epsilon", {}) if fed.is_file() else deployment_epsilon(rounds)
        self.nodes.value = node_table(self.list_nodes) if self.list_nodes else ""
        from workbench.runtime.privacy import privacy_label

        # runs from before the flag existed used seeded DP randomness: shown as not private
        rows = "".join(f"<tr><td>{s}</td><td>{privacy_label(e['run'], e.get('secure_randomness', False), 3)}</td>"
                       f"<td>{privacy_label(e['lifetime'], e.get('secure_randomness', False), 3)}</td>"
                       f"<td>{_budget(e['budget'])}</td></tr>" for s, e in eps.items())
        self.table.value = ("<table><tr><th>node</th><th>epsilon (run)</th><th>epsilon (lifetime)</th><th>budget</th></tr>"
                            f"{rows}</table>" if rows else "<i>no DP in this run: not private</i>")


def _budget(b: float) -> str:
    return f"{b:g}" if b == b else "kept at the node"  # nan: a deployment run's coordinator is not told


def deployment_epsilon(rounds: list[dict]) -> dict[str, dict]:
    """Per site, the epsilon its node last reported (run, lifetime) from ``rounds.json``: what a coordinator of a
    deployment run knows (the ledgers stay at the nodes). Budget is not released: shown as nan."""
    out: dict[str, dict] = {}
    for r in rounds:
        for n in r.get("nodes", []):
            if n.get("site") and "epsilon_run" in n:
                out[str(n["site"])] = {"run": float(n["epsilon_run"]), "lifetime": float(n.get("epsilon_total", "nan")),
                                       "budget": float("nan"), "secure_randomness": bool(n.get("secure_randomness"))}
    return out


def node_table(list_nodes: Callable[[], list[dict[str, Any]]]) -> str:
    """The coordinator SuperLink's enrolled nodes and their status, as HTML (or why it could not ask)."""
    from workbench.errors import WorkbenchError

    try:
        listed = list_nodes()
    except WorkbenchError as e:
        return f"<i>SuperLink not reachable: {e}</i>"
    rows = "".join(f"<tr><td>{n.get('node-id')}</td><td>{n.get('status')}</td><td>{n.get('online-at') or ''}</td>"
                   f"<td>{n.get('offline-at') or ''}</td></tr>" for n in listed)
    return ("<table><tr><th>node</th><th>status</th><th>online since</th><th>offline since</th></tr>"
            f"{rows}</table>" if rows else "<i>no node enrolled</i>")


__all__ = ["RunMonitor", "deployment_epsilon", "node_table", "read_rounds", "rounds_png"]
