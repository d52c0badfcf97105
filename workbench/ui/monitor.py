"""The federated-run monitor: rounds done, per-round metrics per site, epsilon spent per node.

It reads the RUN's ``rounds.json`` (written after every round) and ``federation.json`` (at the end), so the
same widget follows a running federation (``refresh()``) and shows a finished one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any


def read_rounds(run: str | Path) -> list[dict[str, Any]]:
    path = Path(run) / "rounds.json"
    return json.loads(path.read_text())["rounds"] if path.is_file() else []


def rounds_png(rounds: list[dict[str, Any]]) -> bytes:
    """Val AUROC per site and epsilon per node, by round (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3), dpi=90)
    per_site: dict[str, list[tuple[int, float]]] = {}
    per_node: dict[str, list[tuple[int, float]]] = {}
    for r in rounds:
        for site, v in (r.get("evaluate") or {}).items():
            if v.get("auroc") is not None:
                per_site.setdefault(site, []).append((r["round"], v["auroc"]))
        for n in r.get("nodes", []):
            if n.get("epsilon_total") is not None:
                per_node.setdefault(n["site"], []).append((r["round"], n["epsilon_total"]))
    for name, pts in per_site.items():
        a1.plot(*zip(*pts, strict=True), marker="o", label=name)
    for name, pts in per_node.items():
        a2.plot(*zip(*pts, strict=True), marker="o", label=name)
    a1.set(xlabel="round", ylabel="val AUROC", title="val AUROC per site")
    if not per_site and any("kept-local" in v for r in rounds for v in (r.get("evaluate") or {}).values()):
        a1.text(0.5, 0.5, "DP run: each node keeps its val metrics\n(<state-dir>/<site>/local_metrics.jsonl)",
                ha="center", va="center", transform=a1.transAxes, fontsize=8)
    a2.set(xlabel="round", ylabel="epsilon", title="epsilon spent per node")
    for a in (a1, a2):
        if a.lines:
            a.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


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
