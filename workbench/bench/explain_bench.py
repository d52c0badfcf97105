"""``workbench bench explain``: are the explanations right, and is the uncertainty honest? On the evaluation cohort.

The models explained are the federated benchmark's FedAvg models, one per training seed (the product's model;
trained once per plan and seed and cached, ``bench federated`` shares seeds 0-2), scored on every case of the fresh
evaluation cohort (``--eval-seed``) for calibration, coverage and refer rate, and explained on ``--limit`` of its
cases, evenly spaced (``explained_rows``); figures are means over seeds with 95% intervals
(``workbench.bench.explain_seeds``). Each RUN is copied into this benchmark's work folder and given its
per-site uncertainty there (``calibrate_run``: Platt on the pooled val unless a site has 150 val cases of its own,
Mondrian conformal and Venn-Abers on each site's calib where it has 30 of a class, FAISS indexes and OOD
thresholds from each site's train cases).

Per explained case (kept line by line in ``cases.jsonl``: a killed run resumes where it stopped):
- the full explanation (CT Integrated Gradients, 32 steps + note Layer IG, 32 steps + gate and attention
  rollout), timed: ``explain_ms_cpu`` is the median over cases that have both modalities;
- malignant cases with CT: the share of the top 1% |IG| voxels inside the truth's nodule dilated by 5 mm, for
  the model and for a weight-randomised copy (``ct_hit_rate``: share of cases with at least half inside);
  Spearman of the two maps; deletion curves (top-attributed vs random voxels set to air; and words set to
  [PAD] for those with a note) and their areas;
- cases with a note: do the words of the phrases carrying the note-only variables (age, sex, family history,
  smoking, prior cancer, prior CT; the generator's ``note_facts``) outrank the median of the other words;
- the first few malignant CT cases also get Captum Occlusion (blocks of 4 voxels, 5 mm, set to air), compared with IG
  by rank correlation over the same blocks (``occlusion_spearman``), outside the timed budget.
Coverage: each site's evaluation cases through that site's conformal sets, per true class, against the exact 95%
binomial interval around the target for that n.
Clinical plausibility (issue 17, ``counterfactual_check``): on every evaluation case with a note, each published
risk factor (current smoking, family history of lung cancer, prior cancer) added to the note or removed from it
(``workbench.explain.counterfactual``), and how often each seed's stated risk moves in the published direction
(``counterfactual_direction_rate``, target 0.9).
Calibration per site (``workbench.bench.site_calibration``): ECE of the risk a report states, per site, beside the
ECE of the truth's own risk on the same cases (the floor for that many cases), and per-site reliability diagrams
(``explain_reliability_per_site.png``, next to the JSON when ``--out`` is given, else in the work folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.atomic import atomic_write
from workbench.bench.common import envelope
from workbench.explain import checks as C

OCCLUSION_CASES = 10


def _case_record(model: Any, random_model: Any, batch: dict[str, torch.Tensor], case_id: str, truth: dict[str, Any],
                 clean_note: str | None, rng: np.random.Generator, occlusion: bool) -> dict[str, Any]:
    from workbench.explain.attributions import ct_scorer, explain, note_scorer, occlusion_ct

    t0 = time.perf_counter()
    e = explain(model, batch, case_id, steps=32)
    ms = (time.perf_counter() - t0) * 1000
    label = int(truth["label"])
    rec: dict[str, Any] = {"case_id": case_id, "site": truth["site"], "label": label, "explain_ms": ms,
                           "full": e.ct_attribution is not None and e.word_attribution is not None,
                           "ct_completeness_gap": e.ct_completeness_gap, "gate": e.gate, "rollout": e.rollout}
    if e.ct_attribution is not None and label == 1:
        mask = C.nodule_mask(e.ct_attribution.shape[0], 1.25, float(truth["diameter_mm"]), 5.0)
        er = explain(random_model, batch, case_id, steps=32)
        assert er.ct_attribution is not None
        rec["ct_top_share"] = C.top_share_inside(e.ct_attribution, mask)
        rec["ct_top_share_random"] = C.top_share_inside(er.ct_attribution, mask)
        rec["spearman"] = C.spearman(e.ct_attribution, er.ct_attribution)
        rec["spearman_abs"] = C.spearman(np.abs(e.ct_attribution), np.abs(er.ct_attribution))
        f = ct_scorer(model, {k: v for k, v in batch.items() if k != "label"})

        def prob(x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(f(x))

        patch = batch["ct_patch"].float()
        order = np.argsort(-e.ct_attribution.ravel())
        rec["deletion_ct_curve"] = {"attributed": C.deletion_curve(prob, patch, order, 0.0).tolist(),
                                    "random": C.deletion_curve(prob, patch, rng.permutation(order.size), 0.0).tolist()}
        rec["deletion_ct"] = {k: C.curve_auc(np.asarray(v)) for k, v in rec["deletion_ct_curve"].items()}
        if occlusion:
            t1 = time.perf_counter()
            occ = occlusion_ct(model, batch, window=4)
            rec["occlusion_ms"] = (time.perf_counter() - t1) * 1000
            g = occ.shape[0] // 4
            blocks = e.ct_attribution.reshape(g, 4, g, 4, g, 4).sum((1, 3, 5))
            rec["occlusion_spearman"] = C.spearman(blocks, occ[::4, ::4, ::4])
    if e.word_attribution is not None and clean_note is not None:
        phrases = [v for k, v in (truth.get("note_facts") or {}).items() if k in C.NOTE_ONLY_FACTS]
        flags, found = C.phrase_word_flags(clean_note, phrases, model.tokenizer, model.config.text.max_length)
        rec["phrases"], rec["phrases_found"] = len(phrases), found
        rec["note_rank"] = C.note_ranks_high(e.word_attribution, flags) if len(flags) == len(e.words) else None
        if label == 1:
            f_note, ids = note_scorer(model, {k: v for k, v in batch.items() if k != "label"})
            groups = C.word_of_token(model.tokenizer.convert_ids_to_tokens(ids[0].tolist()))

            def prob_note(x: torch.Tensor) -> torch.Tensor:
                return torch.sigmoid(f_note(x.long()))

            order = np.argsort(-e.word_attribution)
            rec["deletion_note_curve"] = {
                "attributed": C.deletion_curve(prob_note, ids, order, 0, groups=groups).tolist(),
                "random": C.deletion_curve(prob_note, ids, rng.permutation(len(order)), 0, groups=groups).tolist()}
            rec["deletion_note"] = {k: C.curve_auc(np.asarray(v)) for k, v in rec["deletion_note_curve"].items()}
    return rec


def _coverage(unc: Any, assessments: list[Any], test: Any) -> dict[str, Any]:
    """Coverage, refer rate and pooled ECE of the stated risk from each test case's ``Assessment``
    (``site_calibration.stated_assessments``; the per-site calibration figures come from ``site_calibration``)."""
    from workbench.metrics import ece
    from workbench.runtime.uncertainty import binomial_interval, class_coverage

    sites = np.array(test.sites)
    y = test.labels
    target = 1 - unc.config.alpha
    p_all = np.zeros(len(y))
    refer = np.zeros(len(y), dtype=bool)
    size = np.zeros(len(y))
    coverage, inside, reasons = {}, {}, {"both_classes": 0, "empty_set": 0, "out_of_distribution": 0}
    for s in sorted(set(test.sites)):
        rows = np.flatnonzero(sites == s)
        res = [assessments[i] for i in rows]
        p_all[rows] = [r.probability for r in res]
        refer[rows] = [r.refer for r in res]
        size[rows] = [len(r.prediction_set) for r in res]
        sets = np.array([[c in r.prediction_set for c in ("benign", "malignant")] for r in res])
        cov = class_coverage(sets, y[rows])
        coverage[s] = cov
        inside[s] = {}
        for cls, (c, n) in cov.items():
            lo, hi = binomial_interval(n, target)
            inside[s][cls] = {"rate": c / n if n else None, "interval95": [lo, hi], "inside": bool(n == 0 or lo <= c / n <= hi)}
        reasons["both_classes"] += int((sets.sum(1) == 2).sum())
        reasons["empty_set"] += int((sets.sum(1) == 0).sum())
        reasons["out_of_distribution"] += int(sum(bool(r.out_of_distribution) for r in res))
    return {"coverage_target": target, "coverage": coverage, "coverage_check": inside,
            "coverage_all_inside": all(v["inside"] for d in inside.values() for v in d.values()),
            "ece": ece(y, p_all), "refer_rate": float(refer.mean()), "refer_reasons": reasons,
            "set_size_mean": float(size.mean())}


def _truths(cohort_dir: Path) -> dict[str, dict[str, Any]]:
    """The cohort's ``truth.jsonl`` by case id (the benchmark's known truth: label, risk, true variables)."""
    truths = {}
    with open(cohort_dir / "truth.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                truths[d["case_id"]] = d
    return truths


def calibration_per_site(unc: Any, run: Path, pred: dict[str, np.ndarray], test: Any,
                         truths: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
    """Coverage and refer figures plus per-site calibration of the stated risk against the true risk's floor, on
    every test case; returns them and each case's ``Assessment`` (row order of ``test``)."""
    from workbench.bench.site_calibration import site_calibration, stated_assessments

    assessments = stated_assessments(unc, run, pred, test)
    result = _coverage(unc, assessments, test)
    result.update(site_calibration(list(test.sites), test.labels, np.array([a.probability for a in assessments]),
                                   np.array([float(truths[c]["risk"]) for c in test.case_ids])))
    return result, assessments


EXPLAIN_CASES = 80  # evaluation cases explained per seed on the full preset (evenly spaced; --limit)
SEEDS = 5  # training seeds of a full run (issue 16: at least 5 for bench explain)
QUICK_SEEDS = 2


def explained_rows(n: int, limit: int) -> list[int]:
    """``limit`` rows spread evenly over the evaluation cohort's ``n`` cases (every site, no label read)."""
    if limit >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, limit)})


def _seed_calibration(setup: Any, seed: int, evald: Any, states: Any, truths: dict[str, dict[str, Any]],
                      progress: bool) -> dict[str, Any]:
    """Seed ``seed``'s FedAvg model calibrated on the training cohort's splits (``calibrate_run``) and every
    evaluation case's stated assessment; kept in ``explain/seed<s>/`` (``stated.json``)."""
    from workbench.bench.federated_bench import fedavg_run
    from workbench.bench.site_calibration import stated_assessments
    from workbench.jsonout import write_json
    from workbench.runtime.inference import predict_logits
    from workbench.runtime.run import load_run
    from workbench.runtime.run_uncertainty import RunUncertainty, UncertaintyConfig, calibrate_run

    sd = setup.work / "explain" / f"seed{seed}"
    done = sd / "stated.json"
    config = UncertaintyConfig()
    how = {"stated_risk": config.stated_risk, "stated_fit": config.stated_fit, "stated_min_own": config.stated_min_own}
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved["case_ids"] == evald.case_ids and saved.get("how") == how:
            return saved
    source = fedavg_run(setup, seed)
    run = sd / "run"
    if not (run / "model" / "config.json").is_file():
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(source, run, ignore=shutil.ignore_patterns("checkpoint"))
    if not (run / "uncertainty.json").is_file() or _calibrated_otherwise(run, config):
        calibrate_run(run, setup.cohort_dir, config, encoded=states["training"], progress=progress)
    model, _ = load_run(run)
    unc = RunUncertainty.load(run)
    pred = predict_logits(model, states["eval"])
    assessments = stated_assessments(unc, run, pred, evald)
    result = _coverage(unc, assessments, evald)
    saved = {"case_ids": evald.case_ids, "run": str(run), "model": str(source), "how": how,
             "stated": [a.probability for a in assessments], "refer": [bool(a.refer) for a in assessments],
             "coverage": result, "sources": {s: u.sources for s, u in unc.sites.items()},
             "ood_thresholds": {s: u.ood_threshold for s, u in unc.sites.items()}}
    write_json(done, saved)
    return saved


def _calibrated_otherwise(run: Path, config: Any) -> bool:
    """A RUN whose uncertainty.json was fitted under another ``UncertaintyConfig``, or predates the stated risk's own
    fit (its sites state Venn-Abers points): it is calibrated again."""
    from workbench.runtime.run_uncertainty import RunUncertainty

    saved = RunUncertainty.load(run)
    return saved.config != config or any(u.stated is None for u in saved.sites.values())


def _stated_over_seeds(setup: Any, evald: Any, states: Any, truths: dict[str, dict[str, Any]], n_seeds: int,
                       progress: bool, figure: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every seed's stated assessments of the evaluation cohort (``_seed_calibration``) and what reads them: the
    per-site calibration, coverage and refer figures over seeds, and the reliability diagram at ``figure``."""
    from workbench.bench.explain_seeds import calibration_over_seeds, coverage_over_seeds
    from workbench.bench.site_calibration import reliability_figure

    per_seed = [_seed_calibration(setup, s, evald, states, truths, progress) for s in range(n_seeds)]
    true_risk = np.array([float(truths[c]["risk"]) for c in evald.case_ids])
    result = calibration_over_seeds(list(evald.sites), evald.labels, true_risk,
                                    [np.asarray(p["stated"]) for p in per_seed])
    result.update(coverage_over_seeds([p["coverage"] for p in per_seed], [np.asarray(p["refer"]) for p in per_seed]))
    figure.parent.mkdir(parents=True, exist_ok=True)
    result["reliability_figure"] = str(reliability_figure(result, figure))
    return per_seed, result


def _reader_states(setup: Any, evald: Any, progress: bool) -> dict[str, Any]:
    """The training splits and the evaluation cohort with the frozen readers' states, computed once for every
    seed (every seed's model starts from the same frozen readers: checked against their weights)."""
    from federated.task import frozen_reader_weights
    from workbench.bench.model_bench import _encoded
    from workbench.models.model import load_model
    from workbench.runtime.encode import with_ct_states, with_note_states

    model = load_model(setup.init)
    tok = model.tokenizer
    data = {k: setup.data[k] for k in ("train", "val", "test")}
    data["calib"] = _encoded(setup.model_work, setup.cohort_dir, "calib", tok, progress)

    def states(d: Any) -> Any:
        return with_ct_states(model, with_note_states(model, d))

    return {"readers": frozen_reader_weights(model), "training": {k: states(v) for k, v in data.items()},
            "eval": states(evald)}


def run_explain_bench(*, quick: bool = False, cohort: str | Path | None = None, seed: int = 0,
                      progress: bool = True, limit: int | None = None, out_dir: str | Path | None = None,
                      seeds: int | None = None, eval_seed: int | None = None,
                      eval_cohort: str | Path | None = None) -> dict[str, Any]:
    """The benchmark (module docstring). ``seed``: the training cohort's; ``seeds``: how many training seeds'
    FedAvg models (0..N-1, default ``SEEDS``; ``bench federated`` shares seeds 0-2); ``limit``: evaluation cases
    explained per seed (default ``EXPLAIN_CASES``, evenly spaced); ``out_dir``: where the JSON goes (``--out``)
    and the per-site reliability figure with it."""
    from tqdm import tqdm

    from federated.task import frozen_reader_weights, same_readers
    from workbench.bench.common import with_evaluation
    from workbench.bench.explain_seeds import (
        explanations_over_seeds,
    )
    from workbench.bench.federated_bench import _evaluation, federated_setup
    from workbench.bench.seeds import seed_count
    from workbench.data.case import load_cases
    from workbench.runtime.run import load_run

    start = time.perf_counter()
    n_seeds = seed_count(seeds, quick=quick, full=SEEDS, quick_default=QUICK_SEEDS)
    setup = federated_setup(quick=quick, cohort=cohort, seed=seed, progress=progress)
    assert setup.cohorts is not None
    cohorts = setup.cohorts = with_evaluation(setup.cohorts, eval_seed=eval_seed, eval_cohort=eval_cohort,
                                              progress=progress)
    assert cohorts.eval is not None
    evald = _evaluation(setup, progress)
    truths = _truths(cohorts.eval)
    states = _reader_states(setup, evald, progress)
    figure_dir = Path(out_dir) if out_dir else setup.work / "explain"
    per_seed, result = _stated_over_seeds(setup, evald, states, truths, n_seeds, progress,
                                          figure_dir / f"explain{'_quick' if quick else ''}_reliability_per_site.png")

    rows = explained_rows(len(evald), limit or (40 if quick else EXPLAIN_CASES))
    cases = {c.case_id: c for s in sorted(set(evald.sites)) for c in load_cases(cohorts.eval / s)}
    recs_by_seed, aggregates = [], []
    for s, p in enumerate(per_seed):
        model, _ = load_run(p["run"])
        if not same_readers(frozen_reader_weights(model), states["readers"]):
            raise RuntimeError(f"seed {s}: its readers are not the starting model's; the shared states do not apply")
        recs = _explain_cases(model, evald, rows, cases, truths, setup.work / "explain" / f"seed{s}", s, quick,
                              progress, tqdm)
        recs_by_seed.append(recs)
        aggregates.append(_aggregate(recs))
    result.update(explanations_over_seeds(recs_by_seed, aggregates))
    # the clinical plausibility check (issue 17): a risk factor added to or removed from every noted case
    result.update(counterfactual_check([p["run"] for p in per_seed], cohorts.eval, evald, setup.work / "explain",
                                       progress))
    all_recs = [r for recs in recs_by_seed for r in recs]
    result["figure"] = str(_figure(all_recs, result, setup.work / "explain" / "explain_checks.png"))
    result.update({"models": [p["model"] for p in per_seed], "runs": [p["run"] for p in per_seed],
                   "n_test": len(evald), "n_eval": len(evald), "n_explained": len(rows),
                   "explained_rows": "evenly spaced over the evaluation cohort (explained_rows)",
                   "eval_seed": cohorts.eval_seed, "eval_cohort": cohorts.eval.name,
                   "training_cohort": cohorts.train.name, "seeds": list(range(n_seeds)),
                   "ct_fill": C.CT_FILL, "note_fill": C.NOTE_FILL, "ct_baseline": "zeros (air, -1000 HU)",
                   "ig_steps": 32, "deletion_fractions": list(C.DELETION_FRACTIONS),
                   "uncertainty_sources": per_seed[0]["sources"], "ood_thresholds": per_seed[0]["ood_thresholds"],
                   "work_dir": str(setup.work / "explain")})
    result.update(envelope(setup.cohort_dir.name if cohort else ("small" if quick else "full"),
                           time.perf_counter() - start))
    return result


def _explain_cases(model: Any, evald: Any, rows: list[int], cases: dict[str, Any], truths: dict[str, dict[str, Any]],
                   sd: Path, seed: int, quick: bool, progress: bool, tqdm: Any) -> list[dict[str, Any]]:
    """One seed's explanation records of ``rows`` (kept line by line in ``sd/cases.jsonl``: a killed run resumes
    where it stopped)."""
    from workbench.runtime.encode import encode_note

    log = sd / "cases.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["case_id"]] = r
    random_model = C.randomized_copy(model, seed)
    torch.manual_seed(seed)
    n_occ = sum(1 for r in done.values() if "occlusion_spearman" in r)
    sd.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        for i in tqdm(rows, desc=f"explain evaluation cases, seed {seed}", unit="case", disable=not progress):
            cid = evald.case_ids[i]
            if cid in done:
                continue
            case = cases[cid]
            clean = encode_note(case.note, model.tokenizer, model.config.text.max_length)[1] if case.note else None
            batch = evald.batch(torch.tensor([i]))
            occ = n_occ < (3 if quick else OCCLUSION_CASES) and int(truths[cid]["label"]) == 1 and bool(batch["modality_mask"][0, 0])
            rec = _case_record(model, random_model, batch, cid, truths[cid], clean, np.random.default_rng([seed, i]), occ)
            n_occ += "occlusion_spearman" in rec
            out.write(json.dumps(rec) + "\n")
            out.flush()
            done[cid] = rec
    return [done[evald.case_ids[i]] for i in rows]


def _figure(recs: list[dict[str, Any]], result: dict[str, Any], path: Path) -> Path:
    """Mean deletion curves (CT and note; attributed vs random) and coverage per site and class against the
    95% binomial band: the checks at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fr = np.asarray(C.DELETION_FRACTIONS)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    for ax, key, title in ((axes[0], "deletion_ct_curve", "CT: voxels set to air"),
                           (axes[1], "deletion_note_curve", "note: words set to [PAD]")):
        curves = [r[key] for r in recs if key in r]
        for kind, colour in (("attributed", "tab:red"), ("random", "tab:gray")):
            if curves:
                ax.plot(fr, np.mean([c[kind] for c in curves], axis=0), color=colour, marker="o", ms=3,
                        label=f"{kind} order first")
        ax.set_xlabel("fraction removed")
        ax.set_ylabel("mean risk (malignant cases)")
        ax.set_title(f"deletion curve, {title} (n={len(curves)})", fontsize=9)
        ax.legend(fontsize=8)
    ax = axes[2]
    labels, rates, lo, hi = [], [], [], []
    for site, d in result["coverage_check"].items():
        for cls, v in d.items():
            if v["rate"] is not None:
                labels.append(f"{site.replace('hospital_', '')}\n{cls[:3]}")
                rates.append(v["rate"])
                lo.append(v["interval95"][0])
                hi.append(v["interval95"][1])
    x = np.arange(len(labels))
    ax.bar(x, np.asarray(hi) - np.asarray(lo), bottom=lo, color="tab:blue", alpha=0.2, label="95% binomial band")
    ax.scatter(x, rates, color="tab:blue", zorder=3, label="coverage (evaluation cases, mean over seeds)")
    ax.axhline(result["coverage_target"], color="k", lw=0.8, ls="--")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0.5, 1.02)
    ax.set_title("conformal coverage per site and class (target 0.9)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def _aggregate(recs: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(xs: list[Any]) -> float | None:
        return float(np.mean(xs)) if xs else None

    mal = [r for r in recs if "ct_top_share" in r]
    hit = [r["ct_top_share"] >= 0.5 for r in mal]
    hit_r = [r["ct_top_share_random"] >= 0.5 for r in mal]
    ranks = [r["note_rank"] for r in recs if r.get("note_rank") is not None]
    del_ct = [r["deletion_ct"] for r in mal]
    del_note = [r["deletion_note"] for r in recs if "deletion_note" in r]
    full_ms = [r["explain_ms"] for r in recs if r["full"]]
    out = {
        "ct_hit_rate": mean(hit), "ct_hit_rate_random": mean(hit_r),
        "ct_hit_rate_gap": (mean(hit) or 0.0) - (mean(hit_r) or 0.0) if mal else None,
        "n_ct_malignant": len(mal),
        "note_rank_rate": mean(ranks), "n_note_cases": len(ranks),
        "note_phrases_found": [sum(r.get("phrases_found", 0) for r in recs), sum(r.get("phrases", 0) for r in recs)],
        "sanity_spearman": float(np.median([r["spearman"] for r in mal])) if mal else None,
        "sanity_spearman_abs": float(np.median([r["spearman_abs"] for r in mal])) if mal else None,
        "deletion_auc": {"attributed": mean([d["attributed"] for d in del_ct]), "random": mean([d["random"] for d in del_ct])},
        "deletion_auc_note": {"attributed": mean([d["attributed"] for d in del_note]),
                              "random": mean([d["random"] for d in del_note])},
        "explain_ms_cpu": statistics.median(full_ms) if full_ms else None,
        "explain_ms_cpu_p90": float(np.percentile(full_ms, 90)) if full_ms else None,
        "ct_completeness_gap_median": float(np.median([r["ct_completeness_gap"] for r in recs
                                                       if r["ct_completeness_gap"] is not None] or [np.nan])),
        "occlusion_spearman": float(np.median([r["occlusion_spearman"] for r in recs if "occlusion_spearman" in r]))
        if any("occlusion_spearman" in r for r in recs) else None,
        "occlusion_ms_cpu": float(np.median([r["occlusion_ms"] for r in recs if "occlusion_ms" in r]))
        if any("occlusion_ms" in r for r in recs) else None,
        "gate_mean": {m: mean([r["gate"][m] for r in recs if m in r["gate"]]) for m in ("ct", "notes")},
        "rollout_mean": {m: mean([r["rollout"][m] for r in recs if m in r["rollout"]]) for m in ("ct", "notes")},
    }
    return out


COUNTERFACTUAL_CHUNK = 256  # notes scored per chunk (kept on disk: a killed run resumes at the next chunk)
PROBE_EDIT = "prior_lung_cancer_add"  # scored and reported apart (counterfactual_prior_lung_cancer), not in the rate
COUNTERFACTUAL_FACTORS = {"smoking": ("smoking_add", "smoking_remove"),
                          "family_history": ("family_history_add", "family_history_remove"),
                          "prior_cancer": ("prior_cancer_add", "prior_cancer_remove")}


def _counterfactual_rows(evald: Any, cases: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str], dict[str, int]]:
    """Every evaluation case with a note read by the model, its edits (``workbench.explain.counterfactual``):
    one row per applied edit (``case_id``, ``row``, ``site``, ``edit``, ``expected``, ``text``), the original
    notes (row order of ``evald``'s noted rows) and the count of skipped edits by reason."""
    from workbench.explain.counterfactual import NotApplicable, add_prior_lung_cancer, note_edits

    rows, originals, skipped = [], [], {}
    has_note = evald.tensors["modality_mask"][:, 1].numpy()
    for i, cid in enumerate(evald.case_ids):
        note = cases[cid].note if cid in cases else None
        if not has_note[i] or not note:
            continue
        originals.append(cid)
        for e in note_edits(note):
            name = f"{e.factor}_{e.action}"
            if e.text is None:
                key = f"{name}: {e.skip}"
                skipped[key] = skipped.get(key, 0) + 1
                continue
            rows.append({"case_id": cid, "row": i, "site": evald.sites[i], "edit": name, "expected": e.expected,
                         "text": e.text})
        with contextlib.suppress(NotApplicable):  # the probe beside the rate: a prior *lung* cancer (no note has one)
            rows.append({"case_id": cid, "row": i, "site": evald.sites[i], "edit": PROBE_EDIT, "expected": 1,
                         "text": add_prior_lung_cancer(note)})
    return rows, originals, skipped


def _counterfactual_batch(tok: Any, max_length: int, texts: list[str], rows: list[int], ct: dict[str, torch.Tensor],
                          evald: Any) -> Any:
    """Encoded notes ``texts`` beside the CT states of their cases (evaluation rows ``rows``)."""
    from workbench.models.tokenizer import numeric_values
    from workbench.runtime.encode import EncodedCases, encode_note

    ids = [encode_note(t, tok, max_length)[0] for t in texts]
    width = max([len(x) for x in ids] + [1])
    note_ids = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for k, x in enumerate(ids):
        note_ids[k, :len(x)] = torch.tensor(x, dtype=torch.long)
        mask[k, :len(x)] = 1
    r = torch.as_tensor(rows, dtype=torch.long)
    pos = {i: k for k, i in enumerate(ct["rows"].tolist())}
    k_ct = torch.as_tensor([pos[i] for i in rows], dtype=torch.long)
    t = {"note_ids": note_ids, "note_mask": mask, "note_values": numeric_values(tok, note_ids) * mask,
         "modality_mask": evald.tensors["modality_mask"][r].clone(), "label": evald.tensors["label"][r].clone(),
         "ct_position": evald.tensors["ct_position"][r].clone(),
         "ct_patch_states": ct["ct_patch_states"][k_ct], "ct_context_states": ct["ct_context_states"][k_ct]}
    return EncodedCases([evald.case_ids[i] for i in rows], [evald.sites[i] for i in rows], t), ids


def counterfactual_check(runs: list[str | Path], eval_dir: Path, evald: Any, work: Path,
                         progress: bool = True) -> dict[str, Any]:
    """The clinical plausibility check (issue 17) on every evaluation case with a note: each published risk
    factor (current smoking, family history of lung cancer, prior cancer) added to the note or removed from it
    (``workbench.explain.counterfactual``), every seed's stated risk before and after, and how often it moved in
    the published direction (``explain_seeds.counterfactual_over_seeds``).

    The CT is unchanged, so every case's frozen CT states are computed once; the frozen note reader's states
    of each edited note once too (every seed shares the readers: checked), and each seed runs only its
    projections and fusion. Kept in ``work/counterfactual/`` (CT states, then one file per chunk of notes): a
    killed run resumes at the next chunk."""
    from tqdm import tqdm

    from federated.task import frozen_reader_weights, same_readers
    from workbench.bench.explain_seeds import counterfactual_over_seeds
    from workbench.data.case import load_cases
    from workbench.explain.counterfactual import SOURCES
    from workbench.runtime.encode import with_ct_states, with_note_states
    from workbench.runtime.inference import predict_logits
    from workbench.runtime.run import load_run
    from workbench.runtime.run_uncertainty import RunUncertainty

    start = time.perf_counter()
    cf = work / "counterfactual"
    cf.mkdir(parents=True, exist_ok=True)
    models = [load_run(r)[0] for r in runs]
    uncs = [RunUncertainty.load(r) for r in runs]
    readers = frozen_reader_weights(models[0])
    for s, m in enumerate(models):
        if not same_readers(frozen_reader_weights(m), readers):
            raise RuntimeError(f"seed {s}: its readers are not seed 0's; the shared states do not apply")
    tok, max_length = models[0].tokenizer, models[0].config.text.max_length
    cases = {c.case_id: c for site in sorted(set(evald.sites)) for c in load_cases(eval_dir / site)}
    rows, originals, skipped = _counterfactual_rows(evald, cases)
    row_of = {c: i for i, c in enumerate(evald.case_ids)}
    # the texts scored: every original note, then every edited one
    texts = [cases[c].note for c in originals] + [r["text"] for r in rows]
    text_rows = [row_of[c] for c in originals] + [r["row"] for r in rows]

    ct_file = cf / "ct_states.pt"
    noted = sorted(set(text_rows))
    if ct_file.is_file() and torch.load(ct_file)["rows"].tolist() == noted:
        ct = torch.load(ct_file)
    else:
        sub = evald.subset(noted)
        parts_p, parts_c = [], []
        for s0 in tqdm(range(0, len(sub), 128), desc="CT states", disable=not progress):
            part = with_ct_states(models[0], sub.subset(list(range(s0, min(s0 + 128, len(sub))))))
            parts_p.append(part.tensors["ct_patch_states"])
            parts_c.append(part.tensors["ct_context_states"])
        ct = {"rows": torch.as_tensor(noted), "ct_patch_states": torch.cat(parts_p),
              "ct_context_states": torch.cat(parts_c)}
        with atomic_write(ct_file) as tmp:
            torch.save(ct, tmp)

    n_chunks = (len(texts) + COUNTERFACTUAL_CHUNK - 1) // COUNTERFACTUAL_CHUNK
    logits = np.zeros((len(models), len(texts)))
    same_ids = np.zeros(len(texts), dtype=bool)
    first_ids: dict[str, list[int]] = {}
    for k in tqdm(range(n_chunks), desc="counterfactual notes", unit="chunk", disable=not progress):
        sl = slice(k * COUNTERFACTUAL_CHUNK, min((k + 1) * COUNTERFACTUAL_CHUNK, len(texts)))
        f = cf / f"chunk{k:04d}.npz"
        digest = hashlib.sha1("\0".join([*texts[sl], *map(str, runs)]).encode()).hexdigest()
        if f.is_file():
            saved = np.load(f)
            if str(saved["digest"]) == digest and saved["logits"].shape[0] == len(models):
                logits[:, sl] = saved["logits"]
                continue
        data, _ = _counterfactual_batch(tok, max_length, texts[sl], text_rows[sl], ct, evald)
        data = with_note_states(models[0], data)
        out = np.stack([predict_logits(m, data)["logits"] for m in models])
        logits[:, sl] = out
        with atomic_write(f) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, logits=out, digest=np.array(digest))
    # which edits the model cannot see (the edited words lie past its token limit): same ids as the original
    for c in originals:
        first_ids[c] = encode_note_ids(cases[c].note, tok, max_length)
    for j, r in enumerate(rows):
        same_ids[len(originals) + j] = encode_note_ids(r["text"], tok, max_length) == first_ids[r["case_id"]]

    sites = np.asarray([evald.sites[i] for i in text_rows])
    stated = np.zeros_like(logits)
    for s, unc in enumerate(uncs):
        for site in sorted(set(sites.tolist())):
            m = sites == site
            stated[s, m] = [a.probability for a in unc.assess(site, logits[s, m])]
    base = {c: j for j, c in enumerate(originals)}
    idx_before = np.array([base[r["case_id"]] for r in rows], dtype=int)
    idx_after = len(originals) + np.arange(len(rows))
    probe = np.array([r["edit"] == PROBE_EDIT for r in rows], dtype=bool)
    before_all = [stated[s, idx_before] for s in range(len(models))]
    after_all = [stated[s, idx_after] for s in range(len(models))]
    names_all = np.asarray([r["edit"] for r in rows])
    expected_all = np.array([r["expected"] for r in rows])
    logit_right_all = [np.where(expected_all > 0, logits[s, idx_after] > logits[s, idx_before],
                                logits[s, idx_after] < logits[s, idx_before]) for s in range(len(models))]
    head = ~probe
    names = names_all[head].tolist()
    expected = expected_all[head]
    before, after = [b[head] for b in before_all], [a[head] for a in after_all]
    logit_right = [r[head] for r in logit_right_all]
    result = counterfactual_over_seeds([r["case_id"] for r, h in zip(rows, head, strict=True) if h], names,
                                       expected, before, after,
                                       kinds={k: list(v) for k, v in COUNTERFACTUAL_FACTORS.items()})
    invisible = same_ids[idx_after][head]
    result["counterfactual_prior_lung_cancer"] = {
        "edit": "add prior lung cancer treated by lobectomy (workbench.explain.counterfactual.add_prior_lung_cancer)",
        "n_edits": int(probe.sum()),
        "direction_rate": float(np.mean([(a[probe] > b[probe]).mean() for a, b in zip(after_all, before_all,
                                                                                      strict=True)]))
        if probe.any() else None,
        "direction_rate_logit": float(np.mean([r[probe].mean() for r in logit_right_all])) if probe.any() else None,
        "why_apart": "the cohort's truth has no prior-lung-cancer term and no note of it holds one (its prior-cancer "
                     "term is Mayo's extrathoracic cancer), so the rate above adds an extrathoracic cancer; this "
                     "probe shows how a model trained on it reads a phrase it never saw"}
    result["counterfactual_prior_lung_cancer"]["direction_rate_if_it_were_the_add_edit"] = lung_edit_rate(result)
    result.update({
        "counterfactual_direction_rate_logit": float(np.mean([r.mean() for r in logit_right])),
        "counterfactual_direction_rate_logit_by_edit": {
            e: float(np.mean([r[np.asarray(names) == e].mean() for r in logit_right])) for e in sorted(set(names))},
        "counterfactual_invisible_edits": {e: int(invisible[np.asarray(names) == e].sum()) for e in sorted(set(names))},
        "counterfactual_skipped": dict(sorted(skipped.items())),
        "counterfactual_n_notes": len(originals),
        "counterfactual_cohort": eval_dir.name,
        "counterfactual_risk": "the stated risk (RunUncertainty.assess: the risk a report states, "
                               f"{uncs[0].config.stated_risk}), each seed's own calibrators; an unchanged risk "
                               "counts as not moving",
        "counterfactual_edits": "workbench.explain.counterfactual: add = a never-smoker becomes a current smoker "
                                "(30 pack-years), no/absent family history becomes lung cancer in the mother, "
                                "no/absent prior cancer becomes colon cancer treated by hemicolectomy (an "
                                "extrathoracic cancer, the truth's prior-cancer term); remove = the reverse "
                                "(current smoker -> never smoker, cessation counselling removed; any stated prior "
                                "cancer -> none); former smokers are not edited; prior lung cancer: "
                                "counterfactual_prior_lung_cancer",
        "counterfactual_sources": SOURCES,
        "counterfactual_ms_cpu": (time.perf_counter() - start) * 1000,
    })
    return result


def update_stated_risk(json_path: str | Path, out_dir: str | Path | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Re-measure what depends on the stated risk in an existing full ``bench explain`` JSON: every seed's RUN
    recalibrated with the current ``UncertaintyConfig`` (the stated risk and its interval), the per-site
    calibration, coverage and refer figures and the plausibility check; the explanation figures (which read the
    model, not the stated risk) are kept as they are. The seeds' FedAvg models are the ones the JSON names (trained
    here from the same recipe and seeds when the cache lacks them: ``fedavg_run``). ``stated_risk_update`` in the
    JSON records what was redone, when and where."""
    from workbench.bench.common import git_sha, machine, with_evaluation
    from workbench.bench.federated_bench import _evaluation, federated_setup
    from workbench.jsonout import write_json
    from workbench.runtime.run_uncertainty import UncertaintyConfig

    start = time.perf_counter()
    path = Path(json_path)
    result = json.loads(path.read_text(encoding="utf-8"))
    n_seeds = len(result["seeds"])
    setup = federated_setup(quick=False, progress=progress)
    assert setup.cohorts is not None
    cohorts = setup.cohorts = with_evaluation(setup.cohorts, eval_seed=result["eval_seed"], progress=progress)
    assert cohorts.eval is not None and cohorts.eval.name == result["eval_cohort"]
    evald = _evaluation(setup, progress)
    truths = _truths(cohorts.eval)
    states = _reader_states(setup, evald, progress)
    per_seed, new = _stated_over_seeds(setup, evald, states, truths, n_seeds, progress,
                                       (Path(out_dir) if out_dir else path.parent) / "explain_reliability_per_site.png")
    new.update(counterfactual_check([p["run"] for p in per_seed], cohorts.eval, evald, setup.work / "explain",
                                    progress))
    new.pop("n_seeds", None)
    config = UncertaintyConfig()
    new["uncertainty_sources"] = per_seed[0]["sources"]
    new["ood_thresholds"] = per_seed[0]["ood_thresholds"]
    new["stated_risk_update"] = {
        "redone": "every seed's RUN recalibrated; ece_*, coverage_*, refer_*, reliability_per_site, counterfactual_*",
        "kept": "the explanation figures (ct_hit_rate, note_rank_rate, deletion_auc, sanity, occlusion, timings)",
        "stated_risk": config.stated_risk, "stated_fit": config.stated_fit,
        "stated_min_own": config.stated_min_own, "machine": machine(),
        "git_sha": git_sha(), "wall_s": round(time.perf_counter() - start, 2)}
    result.update(new)
    write_json(path, result)
    return new


def lung_edit_rate(result: dict[str, Any]) -> float | None:
    """The direction rate had the prior-cancer add edit written prior lung cancer (the probe) instead: every edit's
    mean rate weighted by its count, with the probe's rate in place of ``prior_cancer_add`` (every seed scores the
    same edits, so this equals the mean over seeds of the per-seed rate)."""
    probe = result.get("counterfactual_prior_lung_cancer") or {}
    if probe.get("direction_rate") is None:
        return None
    rates = dict(result["counterfactual_direction_rate_by_edit"])
    counts = dict(result["counterfactual_n_edits"])
    rates["prior_cancer_add"] = probe["direction_rate"]
    return float(sum(rates[e] * counts[e] for e in rates) / sum(counts[e] for e in rates))


def encode_note_ids(text: str, tok: Any, max_length: int) -> list[int]:
    from workbench.runtime.encode import encode_note

    return encode_note(text, tok, max_length)[0]


def update_counterfactual(json_path: str | Path, progress: bool = True) -> dict[str, Any]:
    """Add the clinical plausibility check's keys to an existing ``bench explain`` JSON (every other key kept as
    it is), from the same seeds' calibrated runs and the same evaluation cohort it names (nothing retrained)."""
    from workbench.bench.common import cohort_cache_root, git_sha, machine
    from workbench.jsonout import write_json

    def machine_and_sha() -> dict[str, str]:
        return {"machine": machine(), "git_sha": git_sha()}
    from workbench.runtime.encode import EncodedCases

    path = Path(json_path)
    result = json.loads(path.read_text(encoding="utf-8"))
    eval_dir = cohort_cache_root() / result["eval_cohort"]
    model_work = cohort_cache_root().parent / "bench" / f"model-{result['training_cohort']}"
    evald = EncodedCases.load(model_work / f"eval-{result['eval_cohort']}" / "encoded.pt")
    new = counterfactual_check(result["runs"], eval_dir, evald, Path(result["work_dir"]), progress)
    new.pop("n_seeds", None)  # the JSON's own (the same seeds)
    new.update({f"counterfactual_{k}": v for k, v in machine_and_sha().items()})  # this step's own provenance
    result.update(new)
    write_json(path, result)
    return new


__all__ = ["calibration_per_site", "counterfactual_check", "run_explain_bench", "update_counterfactual",
           "update_stated_risk"]
