"""A federated RUN's round log (``RUN/rounds.json``) and its one plot.

The server writes the plot after every round (``RUN/rounds.png``) and the notebook monitor redraws it while a
federation runs; both call ``rounds_png`` here, so the file and the widget always show the same figure.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from workbench.atomic import write_bytes

ROUNDS_FILE = "rounds.json"


def read_rounds(run: str | Path) -> list[dict[str, Any]]:
    """The rounds logged so far (none before the first round ends)."""
    path = Path(run) / ROUNDS_FILE
    return json.loads(path.read_text(encoding="utf-8"))["rounds"] if path.is_file() else []


def _series(rounds: list[dict[str, Any]], values: dict[str, dict[int, float]]) -> dict[str, tuple[list[int], list[float]]]:
    """Per name, the rounds and values in round order; a round without a value is NaN (a gap in the line)."""
    order = [r["round"] for r in rounds]
    return {name: (order, [v.get(r, math.nan) for r in order]) for name, v in sorted(values.items())}


def val_auroc_by_site(rounds: list[dict[str, Any]]) -> tuple[dict[str, dict[int, float]], dict[str, str]]:
    """Each site's val AUROC by round, and the sites that have none in any round with the reason: a site whose
    val split holds one class (or no case) has no AUROC, and a plot that silently leaves it out reads as a site
    that was not there. Under DP the nodes keep their metrics (``kept-local``)."""
    auroc: dict[str, dict[int, float]] = {}
    seen: dict[str, set[str]] = {}
    for r in rounds:
        for site, m in (r.get("evaluate") or {}).items():
            v = m.get("auroc")
            if "kept-local" in m:
                seen.setdefault(site, set()).add("kept-local")
            elif v is None or not math.isfinite(float(v)):
                seen.setdefault(site, set()).add("undefined")
            else:
                auroc.setdefault(site, {})[r["round"]] = float(v)
    missing = {site: ("kept at the node (DP run)" if "kept-local" in why else
                      "undefined: its val split holds one class or no case")
               for site, why in seen.items() if site not in auroc}
    return auroc, missing


def rounds_png(rounds: list[dict[str, Any]]) -> bytes:
    """Val AUROC per site and, when DP is on, epsilon spent per node, by round (PNG bytes).

    Under DP the nodes keep their val metrics, so the left panel says where they are instead of drawing nothing;
    a run with seeded DP randomness is titled NOT PRIVATE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    auroc, missing = val_auroc_by_site(rounds)
    eps: dict[str, dict[int, float]] = {}
    for r in rounds:
        for n in r.get("nodes", []):
            if n.get("epsilon_total") is not None:
                eps.setdefault(str(n.get("site", "")), {})[r["round"]] = n["epsilon_total"]
    fig, axes = plt.subplots(1, 2 if eps else 1, figsize=(9 if eps else 5, 3.2), dpi=110, squeeze=False)
    ax = axes[0][0]
    for site, (x, y) in _series(rounds, auroc).items():
        ax.plot(x, y, marker="o", label=site)
    ax.set(xlabel="round", ylabel="val AUROC", title="global model on each site's val split")
    if auroc:
        ax.legend(fontsize=7)
    if missing and all(w.startswith("kept") for w in missing.values()) and not auroc:
        ax.text(0.5, 0.5, "DP run: each node keeps its val metrics\n(<state-dir>/<site>/local_metrics.jsonl)",
                ha="center", va="center", transform=ax.transAxes, fontsize=8)
    elif missing:  # under the axis, where it cannot cover a line
        ax.set_xlabel("round\n" + "\n".join(f"no val AUROC for {s}: {w}" for s, w in sorted(missing.items())),
                      fontsize=7)
    if eps:
        ax2 = axes[0][1]
        for site, (x, y) in _series(rounds, eps).items():
            ax2.plot(x, y, marker="o", label=site)
        seeded = any(n.get("secure_randomness") == 0.0 for r in rounds for n in r.get("nodes", []))
        ax2.set(xlabel="round", ylabel="epsilon spent (lifetime)",
                title="privacy spent per node" + (" (NOT PRIVATE: seeded)" if seeded else ""))
        ax2.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_rounds_png(rounds: list[dict[str, Any]], path: str | Path) -> None:
    """The plot to ``path``, atomically (a notebook may be reading the previous round's)."""
    write_bytes(path, rounds_png(rounds))


__all__ = ["ROUNDS_FILE", "read_rounds", "rounds_png", "val_auroc_by_site", "write_rounds_png"]
