"""The node-local similar-case index: exact cosine neighbours, the k-th-neighbour distance, a round trip to disk."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.runtime.similar import SiteIndex


def _index(n: int = 40, d: int = 8, seed: int = 0) -> tuple[SiteIndex, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, d))
    ids = [f"site_a_{i:03d}" for i in range(n)]
    return SiteIndex.build("site_a", x, ids, [i % 2 for i in range(n)], [f"note {i}" for i in range(n)]), x


def test_neighbours_are_the_exact_cosine_ranking() -> None:
    index, x = _index()
    q = np.random.default_rng(1).normal(size=(3, x.shape[1]))
    sims, rows = index.search(q, 5)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(rows, np.argsort(-cos, axis=1)[:, :5])
    np.testing.assert_allclose(sims, np.sort(cos, axis=1)[:, ::-1][:, :5], atol=1e-5)
    # the k-th neighbour's cosine distance, per query
    np.testing.assert_allclose(index.knn_distance(q, 5), 1 - np.sort(cos, axis=1)[:, -5], atol=1e-5)


def test_similar_cases_carry_label_and_note_and_leave_out_the_case_itself(tmp_path) -> None:  # noqa: ANN001
    index, x = _index()
    top = index.similar(x[7], k=3)
    assert top[0]["case_id"] == "site_a_007" and abs(top[0]["similarity"] - 1) < 1e-4
    others = index.similar(x[7], k=3, exclude="site_a_007")
    assert len(others) == 3 and all(o["case_id"] != "site_a_007" for o in others)
    assert all(o["site"] == "site_a" and o["note"].startswith("note ") and o["label"] in (0, 1) for o in others)
    loaded = SiteIndex.load(index.save(tmp_path / "site_a"))
    assert loaded.case_ids == index.case_ids and loaded.similar(x[7], k=3, exclude="site_a_007") == others


def test_bad_input_is_refused_with_the_reason(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(WorkbenchError, match="embeddings for"):
        SiteIndex.build("s", np.zeros((3, 4)), ["a", "b"], [0, 1], ["", ""])
    with pytest.raises(WorkbenchError, match="no training case"):
        SiteIndex.build("s", np.zeros((0, 4)), [], [], [])
    with pytest.raises(WorkbenchError, match="no similar-case index"):
        SiteIndex.load(tmp_path)
