"""The federated-run monitor: rounds done, per-round metrics per site, epsilon spent per node.

It reads the RUN's ``rounds.json`` (written after every round) and ``federation.json`` (at the end), so the
same widget follows a running federation (``refresh()``) and shows a finished one. The plot is the server's own
(``workbench.runtime.rounds``): the widget and ``RUN/rounds.png`` never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.runtime.rounds import read_rounds, rounds_png


class RunMonitor:
    """``RunMonitor(run).widget``; ``refresh()`` re-reads the RUN."""

    def __init__(self, run: str | Path, total_rounds: int | None = None) -> None:
        import ipywidgets as w

        self.run = Path(run)
        fed = self.run / "federation.json"
        cfg = json.loads(fed.read_text()).get("config", {}) if fed.is_file() else {}
        self.total = total_rounds or int(cfg.get("num-server-rounds", cfg.get("num_server_rounds", 0)) or 0)
        self.progress = w.IntProgress(min=0, max=max(self.total, 1), description="rounds")
        self.plot = w.Image(format="png")
        self.table = w.HTML()
        self.widget = w.VBox([self.progress, self.plot, self.table])
        self.refresh()

    def refresh(self) -> None:
        rounds = read_rounds(self.run)
        done = max((r["round"] for r in rounds), default=0)
        self.progress.max = max(self.total, done, 1)
        self.progress.value = done
        self.plot.value = rounds_png(rounds)
        fed = self.run / "federation.json"
        eps = json.loads(fed.read_text()).get("epsilon", {}) if fed.is_file() else {}
        from workbench.runtime.privacy import privacy_label

        # runs from before the flag existed used seeded DP randomness: shown as not private
        rows = "".join(f"<tr><td>{s}</td><td>{privacy_label(e['run'], e.get('secure_randomness', False), 3)}</td>"
                       f"<td>{privacy_label(e['lifetime'], e.get('secure_randomness', False), 3)}</td>"
                       f"<td>{e['budget']:g}</td></tr>" for s, e in eps.items())
        self.table.value = ("<table><tr><th>node</th><th>epsilon (run)</th><th>epsilon (lifetime)</th><th>budget</th></tr>"
                            f"{rows}</table>" if rows else "<i>no DP in this run: not private</i>")


__all__ = ["RunMonitor", "read_rounds", "rounds_png"]
