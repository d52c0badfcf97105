"""The server's update screen (federated.update_screen): a scaled, a sign-flipped and a non-finite update are
flagged with their reason; honest updates that agree are not."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from federated.update_screen import bounded_scales, screen_updates, update_vector


def _honest(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    return base + 0.3 * rng.normal(size=base.shape)


def test_honest_updates_pass_and_each_kind_of_poison_is_flagged() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=500)
    honest = {i: _honest(rng, base) for i in range(3)}
    assert not any(r["anomalous"] for r in screen_updates(honest).values())
    for poison, why in ((10 * _honest(rng, base), "norm"), (-_honest(rng, base), "points away"),
                        (np.full(500, np.nan), "non-finite")):
        found = screen_updates({**honest, 3: poison})
        assert found[3]["anomalous"] and why in found[3]["why"]
        assert not any(found[i]["anomalous"] for i in honest)


def test_the_update_is_what_came_back_minus_what_was_sent() -> None:
    sent = ArrayRecord({"w": Array(np.zeros((2, 2), np.float32)), "steps": Array(np.array([3], np.int64))})
    back = ArrayRecord({"w": Array(np.full((2, 2), 0.5, np.float32)), "steps": Array(np.array([9], np.int64))})
    v = update_vector(sent, back)
    assert v.shape == (4,) and np.allclose(v, 0.5)  # integer arrays (counters) are not weights
    assert screen_updates({1: v})[1]["update_norm"] == 1.0


def test_the_robust_rule_leaves_the_flagged_node_out_and_clips_the_rest_to_the_median_norm() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=300)
    honest = {i: (1.0 + 0.5 * i) * _honest(rng, base) for i in range(3)}  # norms about 1x, 1.5x, 2x
    scale = bounded_scales(screen_updates({**honest, 3: 10 * _honest(rng, base)}))
    assert set(scale) == {0, 1, 2}  # the attacker is out
    norms = {i: float(np.linalg.norm(v)) for i, v in honest.items()}
    median = float(np.median([*norms.values(), float(np.linalg.norm(10 * base))]))
    for i in honest:
        assert abs(scale[i] * norms[i] - min(norms[i], median)) < 1e-9 * median
