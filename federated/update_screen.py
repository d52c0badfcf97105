"""The server's look at each node's update before averaging: its norm, its size beside the other nodes', and its
direction beside theirs; an update out of line is flagged in ``rounds.json`` and the run's audit log.

One poisoned node among four can drag a plain mean anywhere (``workbench bench reliability``'s ``poison`` part
measures how far); the robust option (``strategy = "fedtrimmedavg"`` with ``trim-beta`` >= 1/nodes) bounds it. The
screen itself changes nothing in the aggregate: it records what an operator should look at. Everything it reads is
what the nodes already sent (post-processing of released weights: no privacy cost).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NORM_RATIO = 3.0  # flagged when an update is this many times the median of the other nodes' update norms
MIN_COSINE = -0.5  # flagged when it points away from the other nodes' updates (median cosine to each)


def update_vector(sent: Any, reply: Any) -> np.ndarray:
    """The node's update (weights sent back minus weights sent), every floating array that travelled both ways,
    flattened into one float64 vector."""
    parts = []
    for key in reply:
        if key not in sent:
            continue
        new, old = reply[key].numpy(), sent[key].numpy()
        if new.dtype.kind == "f" and new.shape == old.shape:
            parts.append((new.astype(np.float64) - old.astype(np.float64)).ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def screen_updates(updates: dict[Any, np.ndarray]) -> dict[Any, dict[str, Any]]:
    """Per node: ``update_norm``, ``norm_ratio`` (to the median of the others' norms), ``cosine_to_others`` (the
    median of its cosines to each other node's update: a median, so one attacker cannot make the honest nodes look
    turned away) and ``anomalous`` with its reason (``why``)."""
    norms = {k: float(np.linalg.norm(v)) if np.all(np.isfinite(v)) else math.inf for k, v in updates.items()}
    out: dict[Any, dict[str, Any]] = {}
    for k, v in updates.items():
        others = [o for o in updates if o != k]
        row: dict[str, Any] = {"update_norm": norms[k]}
        why = []
        if not math.isfinite(norms[k]):
            why.append("non-finite values")
        if others:
            med = float(np.median([norms[o] for o in others]))
            ratio = norms[k] / med if med > 0 else (math.inf if norms[k] > 0 else 1.0)
            row["norm_ratio"] = ratio
            if math.isfinite(norms[k]) and ratio > NORM_RATIO:
                why.append(f"norm {ratio:.1f}x the median of the other nodes'")
            cosines = [float(np.dot(v, updates[o]) / (norms[k] * norms[o])) for o in others
                       if math.isfinite(norms[o]) and norms[o] > 0 and math.isfinite(norms[k]) and norms[k] > 0]
            if cosines:
                cos = float(np.median(cosines))
                row["cosine_to_others"] = cos
                if cos < MIN_COSINE:
                    why.append(f"points away from the other nodes' updates (median cosine {cos:.2f})")
        row["anomalous"] = bool(why)
        if why:
            row["why"] = "; ".join(why)
        out[k] = row
    return out


def bounded_scales(screen: dict[Any, dict[str, Any]]) -> dict[Any, float]:
    """``strategy = "normbounded"`` (``federated.robust``) from a round's ``screen_updates`` rows: each kept node's
    scale factor (1, or the clip to the round's median update norm); the nodes the screen flags are left out."""
    norms = {k: r["update_norm"] for k, r in screen.items()}
    median = float(np.median([n for n in norms.values() if np.isfinite(n)])) if norms else 0.0
    return {k: (min(1.0, median / norms[k]) if norms[k] > 0 else 1.0)
            for k, r in screen.items() if not r["anomalous"]}
