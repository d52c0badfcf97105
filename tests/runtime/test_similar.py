"""The node-local similar-case index: exact cosine neighbours, the k-th-neighbour distance, a round trip to disk."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.runtime.similar import SimilarityConfig, SiteIndex


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


def _two_part_cohort(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """40 training cases whose fused vector follows smoking (two clusters) and whose nodule vector follows the
    log diameter (as the CT reader's finding vector does), with a little noise in both."""
    rng = np.random.default_rng(seed)
    n = 40
    smoker = np.arange(n) % 2
    diameter = np.exp(rng.uniform(np.log(4), np.log(30), n))
    fused = np.c_[smoker * 5.0, (1 - smoker) * 5.0, rng.normal(size=(n, 4)) * 0.3]
    nodule = np.c_[np.log(diameter), rng.normal(size=(n, 3)) * 0.05]
    return fused, nodule, diameter, [f"site_a_{i:03d}" for i in range(n)]


def test_weighing_the_nodule_finds_a_case_of_the_same_size_where_the_fused_part_finds_the_same_smoker() -> None:
    fused, nodule, diameter, ids = _two_part_cohort()
    labels, notes = [0] * len(ids), [""] * len(ids)
    fused_only = SiteIndex.build("site_a", fused, ids, labels, notes, nodule, SimilarityConfig(nodule_weight=0.0))
    weighted = SiteIndex.build("site_a", fused, ids, labels, notes, nodule, SimilarityConfig(nodule_weight=0.7))
    # a 21 mm nodule in a smoker: the fused part alone finds other smokers, whatever their nodule
    q_f, q_n = np.array([[5.0, 0.0, 0, 0, 0, 0]]), np.array([[np.log(21.0), 0, 0, 0]])
    err = {}
    for name, index in (("fused", fused_only), ("weighted", weighted)):
        _, rows = index.search(q_f, 5, q_n)
        err[name] = float(np.mean(np.abs(np.log(diameter[rows[0]] / 21.0))))
    assert err["weighted"] < 0.5 * err["fused"], err
    assert weighted.nodule_weight == 0.7 and fused_only.nodule_weight == 0.0


def test_the_similarity_is_the_stated_weighted_sum_of_the_two_cosines() -> None:
    fused, nodule, _, ids = _two_part_cohort(1)
    index = SiteIndex.build("site_a", fused, ids, [0] * len(ids), [""] * len(ids), nodule,
                            SimilarityConfig(nodule_weight=0.3))
    z = (nodule - nodule.mean(0)) / nodule.std(0)  # standardised by the training cases, as the index states
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    expected = 0.3 * unit(z[:3]) @ unit(z).T + 0.7 * unit(fused[:3]) @ unit(fused).T
    sims, rows = index.search(fused[:3], 4, nodule[:3])
    np.testing.assert_allclose(sims, np.take_along_axis(expected, rows, 1), atol=1e-5)
    np.testing.assert_array_equal(rows, np.argsort(-expected, axis=1)[:, :4])
    top = index.similar(fused[5], k=2, exclude=ids[5], nodule=nodule[5])
    for t in top:  # each row says what its similarity is made of
        assert abs(0.3 * t["nodule_cosine"] + 0.7 * t["fused_cosine"] - t["similarity"]) < 1e-3
    # a query without a CT (zero nodule vector) is matched by the fused cosine alone
    no_ct, _ = index.search(fused[:1], 3, np.zeros((1, nodule.shape[1])))
    np.testing.assert_allclose(no_ct[0], np.sort(unit(fused[:1]) @ unit(fused).T)[0, ::-1][:3], atol=1e-5)
    with pytest.raises(WorkbenchError, match="nodule"):
        index.search(fused[:1], 3)  # an index that weighs the nodule needs the query's nodule vector


def test_an_index_saved_before_the_nodule_part_loads_as_fused_only_and_a_mismatch_says_recalibrate(tmp_path) -> None:  # noqa: ANN001
    import json

    fused, nodule, _, ids = _two_part_cohort(2)
    old = SiteIndex.build("site_a", fused, ids, [0] * len(ids), [""] * len(ids))  # fused only, as before
    folder = old.save(tmp_path / "old")
    meta = json.loads((folder / "cases.json").read_text())
    for k in ("similarity", "format"):
        meta.pop(k)
    (folder / "cases.json").write_text(json.dumps(meta))  # the old cases.json: no similarity settings
    legacy = SiteIndex.load(folder)
    assert legacy.legacy and legacy.nodule_weight == 0.0
    np.testing.assert_allclose(legacy.knn_distance(fused[:4], 5, nodule[:4]), old.knn_distance(fused[:4], 5), atol=1e-6)
    new = SiteIndex.build("site_a", fused, ids, [0] * len(ids), [""] * len(ids), nodule)
    loaded = SiteIndex.load(new.save(tmp_path / "new"))
    assert not loaded.legacy and loaded.nodule_weight == SimilarityConfig().nodule_weight
    np.testing.assert_allclose(loaded.knn_distance(fused[:4], 5, nodule[:4]), new.knn_distance(fused[:4], 5, nodule[:4]),
                               atol=1e-6)
    with pytest.raises(WorkbenchError, match="workbench calibrate"):
        loaded.search(fused[:1, :3], 2, nodule[:1])  # another model's embeddings


def test_the_ood_threshold_is_fitted_on_the_vectors_the_queries_use() -> None:
    from workbench.runtime.calibration import Calibration
    from workbench.runtime.run_uncertainty import SiteData, UncertaintyConfig, fit_uncertainty

    rng = np.random.default_rng(3)
    d = SiteData({}, {}, {}, {})
    for split, n in (("train", 60), ("val", 40), ("calib", 60)):
        y = (np.arange(n) % 2).astype(float)
        d.logits[split], d.labels[split] = rng.normal(size=n) + 2 * y - 1, y
        d.fused[split], d.nodule[split] = rng.normal(size=(n, 6)), rng.normal(size=(n, 4))
        d.case_ids[split] = [f"{split}{i}" for i in range(n)]
    unc, indexes = fit_uncertainty({"a": d}, Calibration(), UncertaintyConfig(min_per_class=10))
    index, su = indexes["a"], unc.sites["a"]
    assert index.nodule_weight > 0
    dist = index.knn_distance(d.fused["calib"], su.ood_k, d.nodule["calib"])
    assert su.ood_threshold == pytest.approx(float(np.quantile(dist, 0.99)))
    a = unc.assess("a", d.logits["calib"][:5], d.fused["calib"][:5], index, d.nodule["calib"][:5])
    np.testing.assert_allclose([x.ood_distance for x in a], dist[:5], atol=1e-6)


def test_calibrate_indexes_each_site_by_the_nodule_and_the_fused_embedding(tiny_calibrated_run) -> None:  # noqa: ANN001
    from workbench.runtime.run_uncertainty import SIMILAR_DIR, RunUncertainty

    unc = RunUncertainty.load(tiny_calibrated_run)
    for site in unc.sites:
        index = SiteIndex.load(tiny_calibrated_run / SIMILAR_DIR / site)
        assert not index.legacy and index.nodule_weight == SimilarityConfig().nodule_weight
        assert index.nodule_width == 64 and index.index.d == index.fused_width + 64
