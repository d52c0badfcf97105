"""``make demo``: the main job on the embedded synthetic cohort, end to end:
a training cohort and a separate evaluation cohort -> ingestion -> the shipped readers and fusion starting model
(or, with ``--pretrain``, the two readers pretrained without labels on separate synthetic corpora) -> federated
training with DP across the sites (Flower simulation, one node per site) -> evaluation on the evaluation cohort,
with its 95% interval and each modality removed in turn -> per-site uncertainty -> one held-out case explained and
its reports exported (PDF, HTML, DICOM SR, FHIR).

Why two cohorts (docs/architecture.md §9): the figure the demo prints comes from cases no training step,
calibration or choice has seen, drawn with their own seed, and enough of them (160) that its interval is narrow
enough to read. Why these sizes and this epsilon: the demo must end in ten minutes on two cores, and each node
must hold enough cases for DP-SGD at its epsilon to learn. The choice follows the pre-flight estimate
(``workbench.train.dp_signal``, computed from n, rate, steps and noise alone, no label and no evaluation case):
with about 45-55 train cases a node, epsilon 3 leaves a best-case signal-to-noise of 3-4 (below the floor of 5;
measured once, for the record, at 80 patients a site: AUROC 0.77 [0.69, 0.85]) and epsilon 8 leaves 8-11. More
cases at epsilon 3 would need about 2.5x the rendering time. Epsilon 8 per run (delta 1e-5) is a common
choice for DP-SGD in the literature but a weak guarantee; `--epsilon` sets it, and the pre-flight check says
when it is too small for the data.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from workbench.cohort.config import EVAL_SEED, CohortConfig
from workbench.cohort.generate import generate_cohort, read_truth
from workbench.data.cache import default_cache_dir
from workbench.data.ingest import ingest_site
from workbench.errors import WorkbenchError
from workbench.jsonout import write_json
from workbench.metrics import auroc

if TYPE_CHECKING:
    from workbench.explain.case import CaseExplanation

DEMO_EVAL_SEED = EVAL_SEED  # the evaluation cohort's seed (workbench.cohort.config): nothing trains or chooses on it


@dataclass(frozen=True)
class DemoConfig:
    """What ``make demo`` runs. The defaults are the README's; each is a ``workbench demo`` flag."""

    preset: str = "small"  # the training cohort's sites (4) and scanners
    patients: int = 100  # per site in the training cohort (seed 0): about 55 train cases a node
    eval_patients: int = 40  # per site in the evaluation cohort (DEMO_EVAL_SEED): every case is scored
    epsilon: float = 8.0  # each node's target epsilon for this run (delta 1e-5); why 8: see the module docstring
    rounds: int = 5
    pretrain: bool = False  # pretrain small readers here instead of using the shipped ones
    dp_seeded: bool = False  # replayable DP randomness: NOT private, for comparing runs

    def cohort(self, seed: int, patients: int) -> CohortConfig:
        return CohortConfig(preset=self.preset, patients=patients, seed=seed)


def require_a_trained_node(sites: set[str], refused: dict[str, str], run: Path) -> None:
    """Stop when every node refused: the RUN then holds the untrained starting model, and scoring it would print
    a chance-level AUROC as if it were a result (what a second demo on spent ledgers once did)."""
    if sites and sites <= set(refused):
        raise WorkbenchError(f"no node trained: every node refused ({'; '.join(refused[s] for s in sorted(sites))}); "
                             f"the model in {run} is the untrained starting model, so there is nothing to evaluate")


def run_demo(out: Path, *, preset: str = "small", dp_seeded: bool = False, config: DemoConfig | None = None) -> int:
    config = config or DemoConfig(preset=preset, dp_seeded=dp_seeded)
    cohort, evaluation = out / "cohort", out / "evaluation_cohort"
    os.environ["WORKBENCH_CACHE"] = str((out / "workbench_cache").resolve())  # nodes (Ray workers) inherit it
    print(f"[1/5] synthetic training cohort ({config.preset} sites, {config.patients} patients each, seed 0) -> {cohort}")
    s = generate_cohort(cohort, config.cohort(0, config.patients))
    print(f"      {s.n_cases} cases at {len(s.sites)} sites, {s.bytes_on_disk / 2**20:.0f} MB, {s.seconds:.0f} s")
    print(f"      and the evaluation cohort (same sites and truth, {config.eval_patients} patients each, seed "
          f"{DEMO_EVAL_SEED}: no training step, calibration or choice sees it) -> {evaluation}")
    e = generate_cohort(evaluation, config.cohort(DEMO_EVAL_SEED, config.eval_patients))
    print(f"      {e.n_cases} cases, {e.seconds:.0f} s")
    print("[2/5] ingestion of each site of both cohorts (check, preprocess, cache)")
    reports = _ingest([cohort / site for site in s.sites] + [evaluation / site for site in e.sites])
    summaries = reports[:len(s.sites)]
    eval_refused = sum(len(r["refused"]) for r in reports[len(s.sites):])
    write_json(out / "ingest_summary.json", summaries)
    print(f"\n{'site':<12} {'cases':>5} {'usable':>6} {'ct+note':>7} {'ct':>4} {'note':>4} {'refused':>7} {'slice mm':>8}")
    for r in summaries:
        m = r["modalities"]
        sl = r["spacing_mm"]["slice"]
        print(f"{r['site']:<12} {r['cases']:>5} {r['usable']:>6} {m['ct_and_note']:>7} {m['ct_only']:>4} "
              f"{m['note_only']:>4} {len(r['refused']):>7} {sl['median'] if sl else '-':>8}")
    print(f"\nsummary: {out / 'ingest_summary.json'}; cohort data cards: {cohort}/*/DATA_CARD.md; evaluation "
          f"cohort: {e.n_cases} cases, {eval_refused} refused")
    _train_and_evaluate(out, cohort, evaluation, config)
    _calibrate(out, cohort)
    _explain_one(out, evaluation)
    return 0


def _ingest_one(site_dir: Path) -> dict[str, Any]:
    return ingest_site(site_dir, cache_dir=default_cache_dir(), progress=False).summary()


def _ingest(site_dirs: list[Path], workers: int = 2) -> list[dict[str, Any]]:
    """Ingest the sites two at a time (one process each: ingestion is single-threaded); the summaries in order."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(tqdm(pool.map(_ingest_one, site_dirs), total=len(site_dirs), desc="ingest", unit="site"))


def _calibrate(out: Path, cohort: Path) -> None:
    """Per-site uncertainty into the RUN (``workbench calibrate``)."""
    from workbench.runtime.run_uncertainty import calibrate_run

    print("\nper-site uncertainty (workbench calibrate): Platt on each site's val, 90% Mondrian conformal sets on "
          "its calib split, the stated risk calibrated on val and calib with a bootstrap interval, similar-case "
          "index and out-of-distribution threshold from its train")
    fed = json.loads((out / "run" / "federation.json").read_text()).get("calibration", {})
    if "sites" in fed:  # a DP run: each node already fitted its own during `workbench federate`
        res = fed
        print("      a DP run: each site's calibrators were fitted by its node from its own records (nothing pooled)")
    else:
        res = calibrate_run(out / "run", cohort, cache_dir=default_cache_dir(), progress=False)
    for site, r in res["sites"].items():
        own = [k for k, v in r["sources"].items() if v == "site"]
        print(f"      {site:<12} calib {r['n'].get('calib', 0):>3} cases; own: {', '.join(own) or 'none (pooled)'}")
    for w in res["warnings"]:
        print(f"      warning: {w}")


def _explain_one(out: Path, cohort: Path) -> None:
    """One held-out case with both modalities, explained (``workbench explain``)."""
    from workbench.data.case import load_cases
    from workbench.explain.case import explain_case
    from workbench.explain.export import write_explanation

    for site in sorted(p for p in cohort.iterdir() if (p / "manifest.csv").is_file()):
        case = next((c for c in load_cases(site) if c.split == "test" and c.note_id and c.series_dir), None)
        if case is not None:
            break
    else:
        print("\nno held-out case with both modalities to explain")
        return
    dest = out / "explained" / case.case_id
    explained = explain_case(out / "run", case.case_id, site)
    summary = write_explanation(explained, dest)
    words = ", ".join(f"{w} {v:+.2f}" for w, v in summary["top_words"][:5])
    print(f"\nexplained {case.case_id} ({site.parent.name}/{site.name}): risk {summary['probability']:.2f}, gate ct "
          f"{summary['gate'].get('ct', 0):.2f} / notes {summary['gate'].get('notes', 0):.2f}, attention rollout ct "
          f"{summary['rollout'].get('ct', 0):.2f} / notes {summary['rollout'].get('notes', 0):.2f}")
    print(f"      top words: {words}")
    u = summary.get("uncertainty")
    if u:
        print(f"      90% set {{{', '.join(u['prediction_set'])}}}, risk interval [{u['interval'][0]:.2f}, "
              f"{u['interval'][1]:.2f}] (from {u['interval_calib_cases']} cases), refer to a clinician: "
              f"{'yes' if u['refer'] else 'no'}"
              + (f" ({'; '.join(u['reasons'])})" if u["reasons"] else ""))
    for sim in summary.get("similar_cases", [])[:3]:
        print(f"      similar {sim['site']} case {sim['case_id']}: label {'malignant' if sim['label'] else 'benign'}, "
              f"cosine {sim['similarity']:.2f}")
    print(f"      files: {dest}/ ({', '.join(summary['files'])})")
    _report_one(out, case.case_id, site, explained)


def _report_one(out: Path, case_id: str, site: Path, explained: CaseExplanation) -> None:
    """That case's diagnostic reports, de-identified (export mode): PDF, HTML, DICOM SR, FHIR (``workbench report``)."""
    from workbench.report.build import write_report

    dest = out / "reports" / case_id
    res = write_report(out / "run", case_id, site, dest, explanation=explained)
    print(f"\nreports of {case_id} (export mode, de-identified): {dest}/")
    for name in res["files"]:
        print(f"      {dest / name}")


def _note_reader(out: Path) -> Path:
    """A small note reader, pretrained on a separate synthetic note corpus (``workbench pretrain-notes``)."""
    from workbench.cohort.note_corpus import write_note_corpus
    from workbench.train.pretrain_text import ReaderConfig, build_note_reader, fresh_note_model

    print(f"\n[3/5] --pretrain: the note reader on 2,000 separate synthetic notes (facts, no labels) -> {out}")
    if (out / "config.json").exists():
        return out
    config = ReaderConfig(n_notes=2000, epochs=2)
    corpus = write_note_corpus(config.n_notes, out.with_name("note_corpus"))
    return build_note_reader(fresh_note_model(config), out, corpus, config)[0]


def _ct_reader(out: Path, n_cases: int = 160) -> Path:
    """A small CT reader, pretrained on separate annotated phantoms (``workbench pretrain-ct``)."""
    from workbench.cohort.ct_corpus import write_ct_corpus
    from workbench.data.corpus import phantom_inputs
    from workbench.train.pretrain_ct import CTReaderConfig, build_ct_reader

    print(f"\n      and the CT reader on {n_cases} separate annotated phantoms (diameter, type, spiculation, "
          f"emphysema; no labels) -> {out}")
    path = build_ct_reader(out, lambda: write_ct_corpus(n_cases, out.with_name("ct_corpus"), phantom_inputs),
                           CTReaderConfig(n_cases=n_cases, epochs=12))
    report = json.loads((path / "ct_reader.json").read_text())["report"]
    print(f"      held-out phantoms: diameter R^2 {report['diameter_r2']:.2f}, type accuracy "
          f"{report['nodule_type_accuracy']:.2f}, spiculation accuracy {report['spiculated_accuracy']:.2f}")
    return path


def _fusion_init(out: Path, ct_reader: Path, note_reader: Path) -> Path:
    """The starting model: the fusion pretrained on the readers' corpora (``workbench pretrain-fusion``)."""
    from workbench.cohort.ct_corpus import write_ct_corpus
    from workbench.cohort.note_corpus import FUSION_NOTE_SEED, write_note_corpus
    from workbench.data.corpus import phantom_inputs
    from workbench.train.fusion_init import FusionInitConfig, build_fusion_init

    print("\n      and the fusion layers on those phantoms and 400 more notes, with made-up pairs (facts, no labels) "
          f"-> {out}")
    corpus = out.with_name("ct_corpus")
    return build_fusion_init(out, FusionInitConfig(ct_encoder=str(ct_reader), text_encoder=str(note_reader),
                                                   ct_cases=160, notes=400, steps=80),
                             lambda: write_ct_corpus(160, corpus, phantom_inputs),
                             lambda: write_note_corpus(400, corpus, FUSION_NOTE_SEED))


def _readers(out: Path, config: DemoConfig) -> tuple[Path, Path, Path]:
    """The note reader, the CT reader and the fusion starting model: shipped, or pretrained here."""
    if config.pretrain:
        reader = _note_reader(out / "note_reader")
        ct_reader = _ct_reader(out / "ct_reader")
        return reader, ct_reader, _fusion_init(out / "fusion_init", ct_reader, reader)
    from workbench.models.shipped import PRETRAINED_DIR, shipped

    card = json.loads((PRETRAINED_DIR / "held_out.json").read_text())
    ct, notes = card["ct_reader"], card["note_reader"]
    print(f"\n[3/5] the shipped readers and fusion starting model ({PRETRAINED_DIR}; CARD.md says how they were built "
          "from the project's own synthetic corpora, no cohort case, no label)")
    print(f"      held out ({ct['n']} fresh phantoms, {notes['n']} fresh notes; linear read-out of the frozen features): "
          f"diameter R^2 {ct['diameter_r2']:.2f}, solid vs subsolid AUROC {ct['solid_auroc']:.2f}, ever-smoker AUROC "
          f"{notes['ever_smoker_auroc']:.2f}, prior cancer AUROC {notes['prior_cancer_auroc']:.2f}")
    return shipped("note_reader"), shipped("ct_reader"), shipped("fusion_init")


def _train_and_evaluate(out: Path, cohort: Path, evaluation: Path, config: DemoConfig) -> None:
    from federated.config import FedConfig
    from federated.federate import run_federated
    from workbench.jsonout import jsonable
    from workbench.runtime.privacy import NOT_PRIVATE
    from workbench.runtime.run import evaluate_run

    reader, ct_reader, init = _readers(out, config)
    run = out / "run"
    # the demo's four nodes are its own synthetic rehearsal: each `make demo` starts them with fresh ledgers, so a
    # second demo trains as the first did (kept, their lifetime budget would be spent and every node would refuse).
    # A hospital's node ledger is never reset: `workbench node` keeps it for the node's lifetime.
    had_nodes = (out / "nodes").exists()
    shutil.rmtree(out / "nodes", ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    # the DP recipe is FedConfig's default (the fused head, SGD, 32 steps of rate 0.5 per round, lr 0.5; chosen
    # earlier with test figures in view, to be re-confirmed on val: federated/config.py);
    # the demo sets only its own run: rounds, epsilon, the mean of the last 2 rounds' weights
    fed = FedConfig(cohort=str(cohort), text_encoder=str(reader), ct_encoder=str(ct_reader), init_model=str(init),
                    num_server_rounds=config.rounds, dp=True, dp_epsilon=config.epsilon,
                    dp_budget=max(8.0, config.epsilon), final_average=2, dp_seeded=config.dp_seeded,
                    state_dir=str(out / "nodes"))
    print(f"\n[4/5] federated training with DP: {fed.num_server_rounds} Flower rounds, one node per site, DP-SGD at "
          f"each node on the fused head (65 weights; target epsilon {fed.dp_epsilon:g} per run, lifetime budget "
          f"{fed.dp_budget:g}, delta {fed.dp_delta:g}) -> {run}")
    if had_nodes:
        print(f"      the demo's synthetic nodes start with fresh ledgers ({out / 'nodes'} of the last demo removed; a "
              "hospital's node ledger is never reset)")
    summary = run_federated(fed, run)
    print(f"\n{'node':<12} {'epsilon (run)':>13} {'epsilon (lifetime)':>18} {'budget':>6}  "
          f"{'run: dp-acc. RDP / PLD':>22}  randomness")
    for site, e in summary.get("epsilon", {}).items():
        acc = e["accountants"]
        print(f"{site:<12} {e['run']:>13.3f} {e['lifetime']:>18.3f} {e['budget']:>6g}  "
              f"{acc['dp_accounting_rdp']:>10.3f} / {acc['dp_accounting_pld']:<9.3f}  "
              f"{'OS entropy (secret)' if e['secure_randomness'] else NOT_PRIVATE.upper()}")
    print(f"      what left each node: {', '.join(summary['privacy'].get('left_each_node', []))}; val metrics, "
          "calibration and conformal thresholds stayed at the nodes (workbench node ledger "
          f"{out / 'nodes'}/<site> prints a ledger)")
    for site, why in summary.get("refused", {}).items():
        print(f"refused: {site}: {why}")
    print(f"      {summary['seconds']:.0f} s; rounds: {run / 'rounds.json'}, plot: {run / 'rounds.png'}; "
          f"ledgers and audit logs: {out / 'nodes'}/<site>/")
    print(f"\n[5/5] evaluation on the evaluation cohort (every case; each modality removed in turn) -> "
          f"{out / 'evaluation.json'}")
    require_a_trained_node({p.name for p in Path(cohort).iterdir() if p.is_dir()}, summary.get("refused", {}), run)
    res = jsonable(evaluate_run(run, evaluation, split="all", ablations=True, cache_dir=default_cache_dir(),
                                progress=False))
    res["true_risk_auroc"] = _true_risk_auroc(evaluation)
    write_json(out / "evaluation.json", res)
    _print_evaluation(res, run)


def _true_risk_auroc(evaluation: Path) -> float:
    """AUROC of the truth's own risk on the evaluation cohort: the ceiling any model can reach on those cases."""
    truths = read_truth(evaluation)
    return auroc(np.array([t.label for t in truths]), np.array([t.risk for t in truths]))


def _print_evaluation(res: dict[str, Any], run: Path) -> None:
    def fmt(v: float | None) -> str:
        return "  -  " if v is None else f"{v:.3f}"

    def ci(a: dict[str, Any]) -> str:
        lo, hi = a.get("auroc_ci95") or (None, None)
        return "" if lo is None else f"[{lo:.2f}, {hi:.2f}]"

    print(f"\n{'evaluation cohort':<22} {'n':>4} {'AUROC':>6} {'95% CI':>12} {'AUPRC':>6} {'ECE':>6}  gate ct / notes")
    o = res["overall"]
    print(f"{'both modalities':<22} {o['n']:>4} {fmt(o['auroc']):>6} {ci(o):>12} {fmt(o['auprc']):>6} "
          f"{fmt(o['ece']):>6}  {res['gate_mean']['ct']:.2f} / {res['gate_mean']['notes']:.2f}")
    for name, a in res["ablations"].items():
        kept = "ct" if name == "without_notes" else "notes"
        print(f"{name.replace('_', ' '):<22} {a['n']:>4} {fmt(a['auroc']):>6} {ci(a):>12} {fmt(a['auprc']):>6} "
              f"{fmt(a['ece']):>6}  {kept} gate {a[f'gate_{kept}_mean']:.2f}")
    lo, hi = o.get("auroc_ci95") or (None, None)
    interval = f" (95% CI {lo:.2f}-{hi:.2f}, case bootstrap)" if lo is not None else ""
    print(f"\nresult: the federated DP model's AUROC on {o['n']} evaluation cases that no step of training saw is "
          f"{o['auroc']:.2f}{interval}; the true risk itself scores {res['true_risk_auroc']:.2f} there (the "
          "ceiling). One run: the DP noise is secret and fresh each time, so the figure moves within about its "
          "interval; `workbench bench federated` reports the mean over seeds.")
    print(f"run: {run} (model/, calibration.json, rounds.json, rounds.png, federation.json)")
