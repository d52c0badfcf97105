"""``workbench``: the command line (docs/architecture.md §3).

Exit 0 on success; on bad input, exit 2 with one line naming the file or case and what is wrong. Heavy imports
happen inside each command so ``workbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.errors import WorkbenchError

BENCHES = ("cohort", "deid", "ingest", "model", "federated", "explain", "shipped", "measure", "serve", "reliability")
SEEDED_BENCHES = ("model", "federated")  # figures over training seeds, scored on an evaluation cohort


def _cmd_cohort(a: argparse.Namespace) -> int:
    from workbench.cohort.config import CohortConfig
    from workbench.cohort.generate import generate_cohort

    cfg = CohortConfig(preset=a.preset, sites=a.sites, patients=a.patients, seed=a.seed, workers=a.workers,
                       transfer_syntax=a.transfer_syntax, truth=a.truth)
    s = generate_cohort(a.out, cfg, progress=not a.quiet)
    print(json.dumps({"out": str(s.out), "sites": s.sites, "cases": s.n_cases, "seconds": round(s.seconds, 1),
                      "megabytes": round(s.bytes_on_disk / 2**20, 1)}))
    return 0


def _cmd_ingest(a: argparse.Namespace) -> int:
    from workbench.data.ingest import ingest_site

    rep = ingest_site(a.site_dir, cache_dir=a.cache, quarantine_path=a.quarantine, progress=not a.quiet)
    summary = rep.summary()
    print(json.dumps(summary, indent=2))
    for r in rep.refusals:
        print(f"refused {r.case_id} ({r.modality}): {r.reason}", file=sys.stderr)
    if not rep.usable:
        print(f"{a.site_dir}: no usable case among {rep.n_cases}", file=sys.stderr)
        return 1
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    if a.truth != "brock" and (a.name not in (*SEEDED_BENCHES, "cohort") or a.device != "cpu"):
        raise WorkbenchError(f"--truth {a.truth}: only `bench cohort`, `bench model` and `bench federated` (on the "
                             "CPU) take it")
    if a.name == "shipped":
        from workbench.bench.shipped_bench import run_shipped_bench

        result = run_shipped_bench(quick=a.quick)
    elif a.name == "cohort":
        from workbench.bench.cohort_bench import run_cohort_bench

        result = run_cohort_bench(cohort=a.cohort, seed=a.seed, truth=a.truth)
    elif a.name == "deid":
        from workbench.bench.deid_bench import run_deid_bench

        result = run_deid_bench(quick=a.quick, seed=a.seed)
    elif a.name == "model" and a.device != "cpu":
        from workbench.bench.model_speed import run_model_speed

        result = run_model_speed(device=a.device)
    elif a.name == "federated" and a.device != "cpu":
        from workbench.bench.dp_speed import run_dp_speed

        result = run_dp_speed(device=a.device)
    elif a.name == "explain" and a.device != "cpu":
        from workbench.bench.explain_speed import run_explain_speed

        result = run_explain_speed(device=a.device, model_dir=a.model)
    elif a.name == "explain":
        from workbench.bench.explain_bench import run_explain_bench

        result = run_explain_bench(quick=a.quick, cohort=a.cohort, seed=a.seed, limit=a.limit, out_dir=a.out,
                                   seeds=a.seeds, eval_seed=a.eval_seed, eval_cohort=a.eval_cohort)
    elif a.name == "serve":
        from workbench.bench.serve_bench import run_serve_bench

        result = run_serve_bench(quick=a.quick, studies=a.studies, cohort=a.cohort, steps=a.steps)
    elif a.name == "reliability":
        from workbench.bench.reliability import run_reliability_bench

        result = run_reliability_bench(quick=a.quick, parts=a.part or None, fresh=a.fresh)
    elif a.name == "measure":
        from workbench.bench.measure_bench import run_measure_bench

        result = run_measure_bench(quick=a.quick, cohort=a.cohort, seed=a.seed, limit=a.limit, split=a.split)
    elif a.name == "federated":
        from workbench.bench.federated_bench import run_federated_bench

        result = run_federated_bench(quick=a.quick, cohort=a.cohort, seed=a.seed, seeds=a.seeds, truth=a.truth,
                                     eval_seed=a.eval_seed, eval_cohort=a.eval_cohort)
    elif a.name == "model":
        from workbench.bench.model_bench import run_model_bench

        result = run_model_bench(quick=a.quick, cohort=a.cohort, seed=a.seed, epochs=a.epochs, seeds=a.seeds,
                                 truth=a.truth, eval_seed=a.eval_seed, eval_cohort=a.eval_cohort,
                                 train_device=a.train_device, prepare_only=a.prepare_only)
    else:
        from workbench.bench.ingest_bench import run_ingest_bench

        result = run_ingest_bench(quick=a.quick, cohort=a.cohort, seed=a.seed)
    from workbench.jsonout import jsonable, write_json

    result = jsonable(result)
    text = json.dumps(result, indent=None if a.json else 2)
    print(text)
    if a.out and not result.get("prepared"):  # a prepared work folder is no result
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        shifted = "_" + a.truth if a.truth != "brock" else ""  # model_shifted.json: the shifted truth's table
        name = f"{a.name}{shifted}{'_quick' if a.quick else ''}{'_' + a.device if a.device != 'cpu' else ''}.json"
        write_json(out / name, result)
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from workbench.jsonout import jsonable
    from workbench.models.model import ModelConfig
    from workbench.train.run import train_run
    from workbench.train.trainer import TrainConfig

    modalities = tuple(m.strip() for m in a.modalities.split(",") if m.strip())
    bad = [m for m in modalities if m not in ("ct", "notes")]
    if bad or not modalities:
        raise WorkbenchError(f"--modalities {a.modalities!r}: expected ct, notes or ct,notes")
    tc = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed, device=a.device,
                     patience=a.patience, progress=not a.quiet)
    from workbench.models.text_encoder import TextEncoderConfig

    if a.text_encoder and not Path(a.text_encoder, "config.json").is_file():
        raise WorkbenchError(f"{a.text_encoder}: not a saved encoder directory (config.json is missing)")
    text = TextEncoderConfig(path=a.text_encoder, freeze=not a.finetune_text) if a.text_encoder else TextEncoderConfig()
    from workbench.models.ct_encoder import CTEncoderConfig

    ct = CTEncoderConfig(path=a.ct_encoder, freeze=not a.finetune_ct) if a.ct_encoder else CTEncoderConfig()
    log = train_run(a.site_dirs, a.out, model_config=ModelConfig(modalities=modalities, ct=ct, text=text), train_config=tc,
                    cache_dir=a.cache, progress=not a.quiet)
    keys = ("modalities", "sites", "n_train", "n_val", "trainable_params", "best_epoch", "best_val_auroc",
            "stopped_early", "samples_per_s", "seconds")
    print(json.dumps(jsonable({"run": str(a.out), **{k: log[k] for k in keys}, "refused": len(log["refused"])}), indent=2))
    return 0


def _cmd_federate(a: argparse.Namespace) -> int:
    from federated.config import FedConfig
    from federated.federate import run_federated

    over: dict[str, object] = {"cohort": a.cohort}
    for key in ("rounds", "strategy", "local_epochs", "text_encoder", "ct_encoder", "init_model", "federate", "state_dir",
                "seed", "dp_train"):
        v = getattr(a, key)
        if v is not None:
            over["num-server-rounds" if key == "rounds" else key] = v
    if a.dp_epsilon is not None:
        over.update({"dp": True, "dp-epsilon": a.dp_epsilon})
    if a.dp_budget is not None:
        over["dp-budget"] = a.dp_budget
    if a.dp_seeded:
        over["dp-seeded"] = True
    for item in a.config or []:
        k, _, v = item.partition("=")
        over[k.strip()] = v.strip()
    fed = FedConfig.from_run_config(over, FedConfig(progress=not a.quiet))
    summary = run_federated(fed, a.out)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_pretrain_notes(a: argparse.Namespace) -> int:
    from workbench.cohort.note_corpus import write_note_corpus
    from workbench.train.pretrain_text import ReaderConfig, build_note_reader, fresh_note_model

    config = ReaderConfig(n_notes=a.notes, epochs=a.epochs, progress=not a.quiet)
    corpus = write_note_corpus(a.notes, Path(a.out).with_name(f".{Path(a.out).name}.corpus"))
    out, losses = build_note_reader(fresh_note_model(config), a.out, corpus, config)
    print(json.dumps({"out": str(out), "notes": a.notes, "epochs": a.epochs, "losses": losses}, indent=2))
    return 0


def _cmd_pretrain_ct(a: argparse.Namespace) -> int:
    from workbench.cohort.ct_corpus import write_ct_corpus
    from workbench.data.corpus import phantom_inputs
    from workbench.train.pretrain_ct import CTReaderConfig, build_ct_reader

    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        raise WorkbenchError(f"{out}: exists and is not empty; choose a new folder for the CT reader")
    config = CTReaderConfig(n_cases=a.cases, epochs=a.epochs, progress=not a.quiet,
                            annotation_noise=a.annotation_noise)
    corpus = Path(a.corpus) if a.corpus else out.with_name(f".{out.name}.corpus")
    build_ct_reader(out, write_ct_corpus(a.cases, corpus, phantom_inputs, workers=a.workers, progress=not a.quiet,
                                         annotation_noise=a.annotation_noise), config)
    meta = json.loads((out / "ct_reader.json").read_text())
    print(json.dumps({"out": str(out), "cases": a.cases, "epochs": a.epochs, "corpus": str(corpus),
                      "annotations": meta["annotations"], "report": meta["report"]}, indent=2))
    return 0


def _cmd_pretrain_fusion(a: argparse.Namespace) -> int:
    from workbench.cohort.ct_corpus import write_ct_corpus
    from workbench.cohort.note_corpus import FUSION_NOTE_SEED, write_note_corpus
    from workbench.data.corpus import phantom_inputs
    from workbench.train.fusion_init import FusionInitConfig, build_fusion_init

    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        raise WorkbenchError(f"{out}: exists and is not empty; choose a new folder for the starting model")
    config = FusionInitConfig(ct_encoder=a.ct_encoder, text_encoder=a.text_encoder, ct_cases=a.cases, notes=a.notes,
                              steps=a.steps, progress=not a.quiet)
    corpus = Path(a.corpus) if a.corpus else out.with_name(f".{out.name}.ct_corpus")
    build_fusion_init(out, config, lambda: write_ct_corpus(a.cases, corpus, phantom_inputs, progress=not a.quiet),
                      lambda: write_note_corpus(a.notes, corpus, FUSION_NOTE_SEED))
    meta = json.loads((out / "fusion_init.json").read_text())
    print(json.dumps({"out": str(out), **meta}, indent=2))
    return 0


def _cmd_explain(a: argparse.Namespace) -> int:
    from workbench.explain.case import explain_case
    from workbench.explain.export import write_explanation

    summary = write_explanation(explain_case(a.run, a.case_id, a.site, steps=a.steps), a.out)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from workbench.jsonout import jsonable
    from workbench.runtime.run import evaluate_run

    res = evaluate_run(a.run, a.target, ablations=a.ablations, split=a.split, cache_dir=a.cache, progress=not a.quiet)
    print(json.dumps(jsonable(res), indent=None if a.json else 2))
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from workbench.report.build import write_report

    formats = tuple(f.strip() for f in a.format.split(",") if f.strip())
    res = write_report(a.run, a.case_id, a.site, a.out, formats=formats, clinical=a.clinical, steps=a.steps)
    print(json.dumps(res, indent=2))
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from workbench.jsonout import jsonable
    from workbench.report.study import DEFAULT_NODE_DIR, StudyRequest, predict_study
    from workbench.runtime.study import parse_point

    req = StudyRequest(run=Path(a.run), dicom=Path(a.dicom), nodule=parse_point(a.nodule) if a.nodule else None,
                       nodule_from=Path(a.nodule_from) if a.nodule_from else None,
                       note=Path(a.note) if a.note else None, site=a.site or "",
                       report=Path(a.report) if a.report else None, clinical=a.clinical,
                       node_dir=Path(a.node_dir) if a.node_dir else DEFAULT_NODE_DIR, steps=a.steps, fast=a.fast)
    res = predict_study(req)
    if a.json:
        print(json.dumps(jsonable(res)))
        return 0
    lo_hi = f" [{res['interval'][0]:.1%}, {res['interval'][1]:.1%}]" if res.get("interval") else ""
    print(f"{res['case_id']}: malignancy risk {res['probability']:.1%}{lo_hi}"
          + (f", set {{{', '.join(res['prediction_set'])}}}" if res.get("prediction_set") is not None else "")
          + (" -- REFER: " + "; ".join(res["refer_reasons"]) if res.get("refer") else ""))
    print(f"nodule: {res.get('long_axis_mm')} x {res.get('short_axis_mm')} mm {res.get('nodule_type')} "
          f"{res.get('lobe')}; Lung-RADS {res.get('lung_rads')}; gate "
          + ", ".join(f"{m} {w:.2f}" for m, w in res["gate"].items()))
    for n in res["notes"]:
        print(f"  note: {n}")
    for f in res.get("files", []):
        print(f"  wrote {f}")
    return 0


def _cmd_fast(a: argparse.Namespace) -> int:
    from workbench.data.case import load_cases
    from workbench.runtime.fast import export_fast_cases
    from workbench.runtime.run import site_dirs_of

    cases = [c for site in site_dirs_of(a.cohort) for c in load_cases(site)]
    info = export_fast_cases(a.run, sorted(cases, key=lambda c: c.split != "test")[: a.cases])
    print(f"{a.run}/fast/model.onnx: checked on {info['checked_cases']} cases, largest difference to PyTorch "
          f"{max(info['max_abs_diff'].values()):.1e} (tolerance {info['tolerance']:g})")
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from workbench.service.serve import serve, status

    if a.status:
        st = status(a.node_dir)
        if a.json:
            print(json.dumps(st))
            return 0
        print(", ".join(f"{k} {v}" for k, v in st["counts"].items()))
        for key, why in st["quarantined"].items():
            print(f"  quarantine/{key}: {why}")
        return 0
    serve(a.node_dir, max_s=a.max_s)
    return 0


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from workbench.jsonout import jsonable
    from workbench.runtime.run_uncertainty import UncertaintyConfig, calibrate_run

    if not 0 < a.alpha < 1:
        raise WorkbenchError(f"--alpha {a.alpha}: expected a value in (0, 1)")
    res = calibrate_run(a.run, a.target, UncertaintyConfig(alpha=a.alpha, min_per_class=a.min_per_class,
                                                           ood_quantile=a.ood_quantile),
                        cache_dir=a.cache, progress=not a.quiet)
    print(json.dumps(jsonable(res), indent=2))
    return 0


def _cmd_node_ledger(a: argparse.Namespace) -> int:
    from federated.ledger import ledger_table, read_ledger

    led = read_ledger(a.node_dir)
    if a.json:
        print(json.dumps({**led.summary(), "accountants": led.epsilons(),
                          "runs": {r: {"accountants": led.epsilons(r), "secure_randomness": led.secure(r)}
                                   for r in dict.fromkeys(e.run_id for e in led.entries)},
                          "entries": [e.__dict__ for e in led.entries]}, indent=2))
    else:
        print(ledger_table(led))
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from workbench.demo import DemoConfig, run_demo

    given = {k: getattr(a, k) for k in ("patients", "eval_patients", "epsilon", "rounds") if getattr(a, k) is not None}
    return run_demo(Path(a.out), config=DemoConfig(preset=a.preset, pretrain=a.pretrain, dp_seeded=a.dp_seeded, **given))


def _case_command(sub: argparse._SubParsersAction, name: str, help_: str, run_help: str,
                  out_help: str) -> argparse.ArgumentParser:
    """A command about one case: RUN CASE_ID --site SITE_DIR --out DIR [--steps]."""
    c = sub.add_parser(name, help=help_)
    c.add_argument("run", help=run_help)
    c.add_argument("case_id")
    c.add_argument("--site", required=True, help="the site folder that holds the case")
    c.add_argument("--out", required=True, help=out_help)
    c.add_argument("--steps", type=int, default=32, help="Integrated Gradients steps (default 32)")
    return c


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="Pulmonary-nodule decision-support workbench.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("cohort", help="generate the synthetic multi-hospital cohort")
    c.add_argument("out", help="output folder (resumes a killed run of the same request)")
    c.add_argument("--preset", default="small", choices=("tiny", "small", "full"))
    c.add_argument("--sites", type=int, help="number of hospitals (overrides the preset)")
    c.add_argument("--patients", type=int, help="patients per hospital (overrides the preset)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    c.add_argument("--transfer-syntax", choices=("jpegls", "rle", "explicit"), help="force one syntax for all sites")
    c.add_argument("--truth", default="brock", choices=("brock", "shifted"),
                   help="true risk function: brock (published model, default) or shifted (departs from it)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_cohort)

    i = sub.add_parser("ingest", help="check + preprocess a site; JSON summary; quarantine.csv")
    i.add_argument("site_dir")
    i.add_argument("--cache", help="preprocessing cache folder (default $WORKBENCH_CACHE or ~/.cache/workbench)")
    i.add_argument("--quarantine", help="where to write quarantine.csv (default SITE_DIR/quarantine.csv)")
    i.add_argument("--quiet", action="store_true")
    i.set_defaults(func=_cmd_ingest)

    t = sub.add_parser("train", help="train the fused model on sites' train split (early stop + calibration on val)")
    t.add_argument("site_dirs", nargs="+", metavar="SITE_DIR", help="site folders (or a cohort folder)")
    t.add_argument("--out", required=True, help="RUN folder: model/, calibration.json, train_log.json, plots")
    t.add_argument("--modalities", default="ct,notes", help="ct, notes or ct,notes (default)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--patience", type=int, default=8, help="epochs without a better val AUROC before stopping")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument("--cache", help="preprocessing cache folder")
    t.add_argument("--text-encoder", metavar="DIR",
                   help="a local pretrained note encoder (save_pretrained directory, e.g. from `workbench pretrain-notes`)")
    t.add_argument("--finetune-text", action="store_true", help="train the pretrained note encoder too (default: frozen)")
    t.add_argument("--ct-encoder", metavar="DIR", help="a pretrained CT reader directory (from `workbench pretrain-ct`)")
    t.add_argument("--finetune-ct", action="store_true",
                   help="train the pretrained CT reader's convolutions too (default: frozen)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

    f = sub.add_parser("federate", help="federated training across the cohort's sites (Flower simulation, optional DP)")
    f.add_argument("cohort", help="cohort folder: one simulated hospital node per site folder")
    f.add_argument("--out", required=True, help="RUN folder: model/, rounds.json + rounds.png, federation.json")
    f.add_argument("--rounds", type=int, help="server rounds (default 3, [tool.flwr.app.config])")
    f.add_argument("--strategy", choices=["fedavg", "fedprox", "fedadam", "fedtrimmedavg", "krum"])
    f.add_argument("--dp-epsilon", type=float, help="record-level DP at each node with this run target epsilon")
    f.add_argument("--dp-budget", type=float, help="each node's lifetime epsilon budget (default 8)")
    f.add_argument("--dp-seeded", action="store_true",
                   help="replayable DP draws and noise from the config's seed, for tests and debugging: NOT private "
                        "(ledgers and every epsilon shown say so)")
    f.add_argument("--local-epochs", type=int, help="plain training: local passes per round")
    f.add_argument("--text-encoder", help="a pretrained note reader folder (frozen)")
    f.add_argument("--ct-encoder", help="a pretrained CT reader folder (convolutions frozen)")
    f.add_argument("--init-model", metavar="DIR", help="start every node from this model folder "
                   "(e.g. from `workbench pretrain-fusion`)")
    f.add_argument("--dp-train", choices=["all", "fusion", "heads", "head"],
                   help="what DP-SGD trains (head: the fused head alone, over a pretrained fusion)")
    f.add_argument("--federate", choices=["all", "trainable", "fusion"], help="which parameters travel")
    f.add_argument("--state-dir", help="where the nodes keep their ledgers and audit logs")
    f.add_argument("--seed", type=int)
    f.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="any [tool.flwr.app.config] key, e.g. --config dp-sample-rate=0.05 (repeatable)")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=_cmd_federate)

    pn = sub.add_parser("pretrain-notes", help="pretrain the note reader on a separate synthetic note corpus (no labels)")
    pn.add_argument("--out", required=True, help="encoder directory (save_pretrained + tokenizer + card)")
    pn.add_argument("--notes", type=int, default=6000, help="corpus size (default 6000)")
    pn.add_argument("--epochs", type=int, default=3)
    pn.add_argument("--quiet", action="store_true")
    pn.set_defaults(func=_cmd_pretrain_notes)

    pc = sub.add_parser("pretrain-ct", help="pretrain the CT reader on a separate annotated phantom corpus (no labels)")
    pc.add_argument("--out", required=True, help="CT reader directory (ct_reader.safetensors + ct_reader.json + card)")
    pc.add_argument("--cases", type=int, default=1500, help="corpus size (default 1500; about 1 s per case per core)")
    pc.add_argument("--epochs", type=int, default=20)
    pc.add_argument("--corpus", help="where the corpus chunks are kept (default: a hidden sibling of --out); resumable")
    pc.add_argument("--workers", type=int, default=2, help="processes rendering the corpus")
    pc.add_argument("--annotation-noise", action="store_true",
                    help="learn from one simulated radiologist's annotations (inter-reader disagreement on diameter, "
                    "type, spiculation) instead of the clean truth; held-out figures stay against the clean truth")
    pc.add_argument("--quiet", action="store_true")
    pc.set_defaults(func=_cmd_pretrain_ct)

    pf = sub.add_parser("pretrain-fusion", help="pretrain the fusion layers on both reader corpora (no labels): the "
                        "starting model of a private federation")
    pf.add_argument("--out", required=True, help="model folder to write (use it as federate --init-model)")
    pf.add_argument("--ct-encoder", required=True, metavar="DIR", help="a CT reader folder (workbench pretrain-ct)")
    pf.add_argument("--text-encoder", required=True, metavar="DIR", help="a note reader folder (workbench pretrain-notes)")
    pf.add_argument("--cases", type=int, default=1500, help="CT phantoms (default 1500; the CT reader's corpus)")
    pf.add_argument("--notes", type=int, default=3000, help="notes (default 3000)")
    pf.add_argument("--steps", type=int, default=600, help="optimizer steps (default 600; about 1 s each on 2 cores)")
    pf.add_argument("--corpus", help="where the phantom chunks are kept (reuse the CT reader's to skip rendering)")
    pf.add_argument("--quiet", action="store_true")
    pf.set_defaults(func=_cmd_pretrain_fusion)

    x = _case_command(sub, "explain", "explain one case: CT and note attributions, gate, files in --out",
                      "a RUN folder (workbench train / federate)",
                      "folder for explanation.json/.npz, ct_slices.png, note.png/.html, gate.png")
    x.set_defaults(func=_cmd_explain)

    r = _case_command(sub, "report", "export one case's diagnostic report: PDF, HTML, DICOM SR (TID 1500), FHIR R4 Bundle",
                      "a RUN folder (calibrated with workbench calibrate for sets, intervals and refer flags)",
                      "folder for report.pdf, report.html, report_sr.dcm, report_fhir.json")
    r.add_argument("--format", default="pdf,html,sr,fhir", help="comma list of pdf, html, sr, fhir (default: all)")
    r.add_argument("--clinical", action="store_true",
                   help="keep identifiers and original UIDs (for the hospital's own PACS/EHR; default: de-identified)")
    r.set_defaults(func=_cmd_report)

    pr = sub.add_parser("predict", help="score one study from outside any cohort: its CT series, the nodule a "
                        "radiologist marked (a point or an SR/SEG mark), the note; optionally the four reports")
    pr.add_argument("run", help="a RUN folder (calibrated with workbench calibrate for the site's interval and set)")
    pr.add_argument("--dicom", required=True, help="the study's folder (the CT series; other series and the mark may "
                    "sit beside it)")
    where = pr.add_mutually_exclusive_group(required=True)
    where.add_argument("--nodule", help="the nodule centre X,Y,Z in mm, patient coordinates (LPS); write "
                       "--nodule=-80.5,32,-120 when X is negative")
    where.add_argument("--nodule-from", help="a radiologist's mark: a DICOM SR (SCOORD3D or SCOORD) or a SEG")
    pr.add_argument("--note", help="the clinical note: a text file or a FHIR DocumentReference JSON (de-identified "
                    "before the model reads it)")
    pr.add_argument("--site", help="the site whose calibrators state the risk (default: the RUN's pooled ones)")
    pr.add_argument("--report", help="write report.pdf/.html/_sr.dcm/_fhir.json/.json into this folder")
    pr.add_argument("--clinical", action="store_true", help="reports keep identifiers and original UIDs (for the "
                    "hospital's own PACS/EHR; default: de-identified)")
    pr.add_argument("--node-dir", help="the node folder holding its UID secret (default ~/.local/share/workbench/node)")
    pr.add_argument("--steps", type=int, default=32, help="Integrated Gradients steps for --report (default 32)")
    pr.add_argument("--fast", action="store_true", help="score with the RUN's ONNX export (workbench fast RUN "
                    "COHORT); the explanation still runs in PyTorch")
    pr.add_argument("--json", action="store_true", help="print the result as JSON")
    pr.set_defaults(func=_cmd_predict)

    fx = sub.add_parser("fast", help="export a RUN's model to ONNX for the node's fast CPU path, checked against "
                        "PyTorch on real cases (RUN/fast/)")
    fx.add_argument("run", help="a RUN folder")
    fx.add_argument("cohort", help="a cohort or site folder whose cases check the export (test split first)")
    fx.add_argument("--cases", type=int, default=32, help="cases to check on (default 32)")
    fx.set_defaults(func=_cmd_fast)

    sv = sub.add_parser("serve", help="the node's inference service: a DICOM listener for studies and marks from "
                        "the PACS, notes from a drop folder; each study scored, its SR sent back to the PACS and its "
                        "FHIR Bundle to the EHR (node.toml [service])")
    sv.add_argument("node_dir", help="the node folder (node.toml with a [service] table; studies under service/)")
    sv.add_argument("--status", action="store_true", help="print what is where (done, quarantine with reasons, "
                    "waiting) and exit")
    sv.add_argument("--max-s", type=float, help="stop after this many seconds (default: until SIGTERM or Ctrl-C)")
    sv.add_argument("--json", action="store_true", help="with --status: print it as JSON")
    sv.set_defaults(func=_cmd_serve)

    k = sub.add_parser("calibrate", help="per-site uncertainty of a RUN: Platt on val, Mondrian conformal sets on "
                       "calib, the stated risk and its interval from val and calib, similar-case indexes and "
                       "out-of-distribution thresholds from train")
    k.add_argument("run", help="a RUN folder (workbench train / federate)")
    k.add_argument("target", help="a cohort folder or a site folder (its train, val and calib splits)")
    k.add_argument("--alpha", type=float, default=0.1, help="1 - coverage of the prediction sets (default 0.1: 90%%)")
    k.add_argument("--min-per-class", type=int, default=30,
                   help="calib cases of each class a site needs for its own conformal thresholds (else pooled)")
    k.add_argument("--ood-quantile", type=float, default=0.99,
                   help="calib quantile of the nearest-neighbour distance beyond which a case is out of distribution")
    k.add_argument("--cache", help="preprocessing cache folder")
    k.add_argument("--quiet", action="store_true")
    k.set_defaults(func=_cmd_calibrate)

    e = sub.add_parser("evaluate", help="metrics of a RUN on a cohort's or site's test split")
    e.add_argument("run")
    e.add_argument("target", help="a cohort folder or a site folder")
    e.add_argument("--json", action="store_true", help="compact JSON on one line")
    e.add_argument("--ablations", action="store_true", help="also each modality removed in turn")
    e.add_argument("--split", default="test", choices=("train", "val", "calib", "test", "all"),
                   help="split to score (all: every case, for an evaluation cohort no run has seen)")
    e.add_argument("--cache", help="preprocessing cache folder")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_evaluate)

    b = sub.add_parser("bench", help="benchmarks; print one JSON object")
    b.add_argument("name", choices=BENCHES)
    b.add_argument("--quick", action="store_true", help="smaller, faster run")
    b.add_argument("--json", action="store_true", help="compact JSON on one line")
    b.add_argument("--cohort", help="use this cohort folder instead of the cached preset")
    b.add_argument("--out", help="also write the JSON into this folder (e.g. bench/results)")
    b.add_argument("--seed", type=int, default=0, help="the training cohort's seed (default 0)")
    b.add_argument("--seeds", type=int, metavar="N",
                   help="model / federated / explain: training seeds, figures are their mean with a 95%% interval "
                        "(default 5 for model and explain, 3 for federated, 2 with --quick)")
    b.add_argument("--eval-seed", type=int, metavar="S",
                   help="model / federated / explain: the evaluation cohort's seed (default 1000003, "
                        "workbench.cohort.config.EVAL_SEED; same preset, sites and truth; every case of it is scored)")
    b.add_argument("--eval-cohort", metavar="DIR", help="model / federated / explain: score on this cohort folder instead")
    b.add_argument("--truth", default="brock", choices=("brock", "shifted"),
                   help="cohort / model / federated: the cohort's risk function (shifted writes NAME_shifted.json)")
    b.add_argument("--device", default="cpu", help="model bench: cuda measures speed only, on random inputs")
    b.add_argument("--epochs", type=int, help="model bench: training epochs (default 40, quick 20)")
    b.add_argument("--train-device", default="cpu",
                   help="model bench: train and score the variants on this device (cpu or cuda); the figures keep "
                        "their meaning and the JSON names the device")
    b.add_argument("--prepare-only", action="store_true",
                   help="model bench: stop once the work folder is ready (cohorts, readers, encoded sets) and print "
                        "it; train it anywhere with python -m workbench.bench.model_seeds (bench/model_seeds_gpu.sh)")
    b.add_argument("--limit", type=int, help="explain bench: evaluation cases explained per seed (default 80, quick 40; evenly "
                   "spaced); measure bench: cases measured (default all of the split; evenly spaced)")
    b.add_argument("--split", default="test", choices=("train", "val", "calib", "test"),
                   help="measure bench: the split whose CT cases are measured (default test)")
    b.add_argument("--model", metavar="DIR", help="explain bench on a device: time this saved model")
    b.add_argument("--studies", type=int, help="serve bench: studies sent through Orthanc and the service (default "
                   "200, quick 20)")
    b.add_argument("--steps", type=int, default=32, help="serve bench: Integrated Gradients steps of each report "
                   "(default 32, the service's default)")
    b.add_argument("--part", action="append", metavar="NAME",
                   help="reliability bench: run only this part (repeatable): fuzz, deid_baseline, service_faults, "
                        "phi_scan, poison, mia; finished parts are kept and reloaded")
    b.add_argument("--fresh", action="store_true", help="reliability bench: run the chosen parts again, not reloaded")
    b.set_defaults(func=_cmd_bench)

    from workbench.cli_deploy import add_deploy_parsers, add_node_parsers, add_poc_parser

    add_deploy_parsers(sub)
    add_poc_parser(sub)

    nd = sub.add_parser("node", help="a hospital's node agent: init, start, doctor, and its records (ledger)")
    nsub = nd.add_subparsers(dest="node_command", required=True)
    nl = nsub.add_parser("ledger", help="the node's privacy ledger: every release, epsilon under Opacus RDP and "
                         "dp-accounting RDP and PLD, and whether the randomness was secret")
    nl.add_argument("node_dir", help="the node's state folder (<state-dir>/<site>) or its privacy_ledger.json")
    nl.add_argument("--json", action="store_true")
    nl.set_defaults(func=_cmd_node_ledger)
    add_node_parsers(nsub)

    d = sub.add_parser("demo", help="the main job on the embedded synthetic cohort")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--preset", default="small", choices=("tiny", "small", "full"))
    d.add_argument("--patients", type=int, help="patients per site in the training cohort (default: DemoConfig's)")
    d.add_argument("--eval-patients", type=int,
                   help="patients per site in the evaluation cohort, every one scored (default: DemoConfig's)")
    d.add_argument("--epsilon", type=float, help="each node's target epsilon (default: DemoConfig's)")
    d.add_argument("--rounds", type=int, help="Flower rounds (default: DemoConfig's)")
    d.add_argument("--pretrain", action="store_true",
                   help="pretrain small readers and fusion layers here instead of using the shipped ones (slower, weaker)")
    d.add_argument("--dp-seeded", action="store_true",
                   help="replayable DP draws and noise, to compare runs figure for figure -- NOT private")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
