"""The rounds plot names every site: a site without a val AUROC is listed with the reason instead of vanishing."""

from __future__ import annotations

import math

from workbench.runtime.rounds import rounds_png, val_auroc_by_site


def _rounds(evaluate: dict[str, dict[str, float]]) -> list[dict]:
    return [{"round": r, "evaluate": evaluate, "nodes": []} for r in (1, 2)]


def test_a_site_without_a_val_auroc_is_listed_with_its_reason() -> None:
    rounds = _rounds({"site_a": {"auroc": 0.8}, "site_b": {"auroc": math.nan}, "site_c": {"loss": 0.5}})
    auroc, missing = val_auroc_by_site(rounds)
    assert auroc == {"site_a": {1: 0.8, 2: 0.8}}
    assert missing == {"site_b": "undefined: its val split holds one class or no case",
                       "site_c": "undefined: its val split holds one class or no case"}
    assert rounds_png(rounds).startswith(b"\x89PNG")


def test_a_dp_run_keeps_the_metrics_at_the_nodes() -> None:
    auroc, missing = val_auroc_by_site(_rounds({"site_a": {"kept-local": 1.0}}))
    assert auroc == {} and missing == {"site_a": "kept at the node (DP run)"}
