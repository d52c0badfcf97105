"""``workbench bench serve``: studies through a real PACS and the node's inference service, on this machine.

What it measures, with every process started here and stopped by PID:

- **the service under a batch**: ``studies`` synthetic studies (CT + the radiologist's mark SR; the note dropped
  by accession number) are uploaded to an Orthanc on loopback (``pacs_sandbox``), which sends them to
  ``workbench serve`` by C-STORE, ten studies a request, while the service scores what has arrived.
  ``studies_per_min`` counts from the first send to the last study finished; ``stage_ms`` holds the medians per
  study of each stage: ``receive`` (first to last instance received), ``load`` (series and mark read),
  ``preprocess`` (crop, resample, tokenise), ``predict`` (the model's forward, the fast path when the RUN has one),
  ``explain`` (Integrated Gradients, ``steps``), ``report`` (the four reports), ``store`` (C-STORE of the SR), and
  beside them ``measure`` (the nodule's size from the CT) and ``uncertainty``. ``lost`` = sent - (done +
  quarantined) (must be 0); ``duplicated`` = SRs in Orthanc beyond one per scored study.
- **the fast path**: ``predict_ms_fp32`` and ``predict_ms_fast`` are the medians of one case's forward pass (both
  readers and the fusion; the batch of one a study is scored with) in PyTorch and in onnxruntime, measured
  interleaved in one process on the same cases; ``predict_ms_*_end_to_end`` adds the preprocessing (cached);
  ``predict_ms_int8`` and ``int8_logit_max_abs_diff`` are the alternative it was chosen against (PyTorch dynamic
  int8 quantisation of the Linear layers), measured in the same loop.
- **the fast path's accuracy**: ``auroc_delta_fast`` = AUROC through onnxruntime - AUROC through PyTorch, both on
  the test split of the full preset's training cohort (``full-seed0`` when cached, else its test cases alone,
  ``full_test_split``; ``--cohort`` names another).

The RUN scored with is trained here once (cached): the shipped readers, frozen, and a fused head trained on the
small preset's cohort, calibrated, exported (``workbench fast``). It stands for a node's model; the quality of its
risk is not what this benchmark measures.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.bench.common import cached_cohort, cohort_cache_root, envelope
from workbench.cohort.config import EVAL_SEED, CohortConfig
from workbench.errors import WorkbenchError

SERVE_SEED = EVAL_SEED + 19  # the studies: drawn with a seed no training cohort or sweep uses
SEND_CHUNK = 10


def _work() -> Path:
    return cohort_cache_root().parent / "bench" / "serve"


def studies_cohort(n: int, progress: bool) -> Path:
    """A cohort with at least ``n`` CT studies (about 7% of the generator's patients have a note and no CT): the
    smallest finished one of this seed that is large enough, else one generated (from a smaller one's cases)."""
    from workbench.cohort.generate import generate_cohort

    per_site = math.ceil(1.12 * n / 4)
    finished = sorted((int(p.name.split("-")[1]), p) for p in cohort_cache_root().glob(f"serve-*-seed{SERVE_SEED}")
                      if (p / "cohort.json").is_file() and p.name.split("-")[1].isdigit())
    big_enough = [p for size, p in finished if size >= 4 * per_site]
    if big_enough:
        return big_enough[0]
    out = cohort_cache_root() / f"serve-{4 * per_site}-seed{SERVE_SEED}"
    if not (out / "cohort.json").exists():
        smaller = sorted(cohort_cache_root().glob(f"serve-*-seed{SERVE_SEED}"),  # same seed: the same first cases
                         key=lambda p: int(p.name.split("-")[1]))
        if smaller and not out.exists():
            shutil.copytree(smaller[-1], out, ignore=shutil.ignore_patterns("cohort.json"))
        generate_cohort(out, CohortConfig(preset="small", sites=4, patients=per_site, seed=SERVE_SEED),
                        progress=progress)
    return out


def ct_cases(cohort: Path, n: int) -> list[Any]:
    from workbench.data.case import load_cases
    from workbench.runtime.run import site_dirs_of

    cases = [c for s in site_dirs_of(cohort) for c in load_cases(s) if c.series_dir is not None]
    if len(cases) < n:
        raise WorkbenchError(f"bench serve: {cohort} has {len(cases)} CT studies, {n} asked for")
    return cases[:n]


def node_run(progress: bool) -> Path:
    """A calibrated RUN with a fast export: shipped readers (frozen) + a fused head trained on the small preset."""
    from workbench.models.config import CTEncoderConfig, ModelConfig, TextEncoderConfig
    from workbench.models.shipped import shipped
    from workbench.runtime.run_uncertainty import calibrate_run
    from workbench.train.run import train_run
    from workbench.train.trainer import TrainConfig

    run = _work() / "run"
    if (run / "fast" / "fast.json").is_file():
        return run
    small = cached_cohort("small", 0, progress=progress)
    shutil.rmtree(run, ignore_errors=True)
    cfg = ModelConfig(ct=CTEncoderConfig(path=str(shipped("ct_reader")), freeze=True),
                      text=TextEncoderConfig(path=str(shipped("note_reader")), freeze=True))
    train_run([small], run, model_config=cfg, train_config=TrainConfig(epochs=20, progress=progress),
              progress=progress)
    calibrate_run(run, small, progress=progress)
    _export(run, small)
    return run


def _export(run: Path, cohort: Path, n: int = 16) -> None:
    from workbench.data.case import load_cases
    from workbench.runtime.fast import export_fast_cases
    from workbench.runtime.run import site_dirs_of

    cases = sorted((c for s in site_dirs_of(cohort) for c in load_cases(s)), key=lambda c: c.split != "test")[:n]
    export_fast_cases(run, cases)


def _tokenizer(model: Any) -> Any:
    if model.tokenizer is None:
        raise WorkbenchError("bench serve: the RUN's model has no tokenizer")
    return model.tokenizer


def predict_speed(run: Path, cohort: Path, n: int = 40, repeats: int = 5) -> dict[str, float | int | None]:
    """Medians of one case's forward in PyTorch and onnxruntime (interleaved, same cases), and of ``predict``."""
    from workbench.data.cache import PreprocessCache, default_cache_dir
    from workbench.runtime.encode import encode_cases
    from workbench.runtime.fast import FastModel
    from workbench.runtime.predict import predict
    from workbench.runtime.run import load_run

    model, cal = load_run(run)
    model.eval()
    fast = FastModel(run, model)
    cases = ct_cases(cohort, n)
    cache = PreprocessCache(default_cache_dir())
    data = encode_cases(cases, _tokenizer(model), cache=cache, modalities=model.modalities,
                        max_length=model.config.text.max_length, progress=False)
    int8 = _int8(model)
    fp32, onnx, q8, q8_diff, e2e_fp32, e2e_fast = [], [], [], [], [], []
    with torch.no_grad():
        for i in range(len(data)):
            b = {k: v for k, v in data.batch(torch.arange(i, i + 1)).items() if k != "label"}
            for _ in range(2):  # warm both
                model.forward_batch(b)
                fast.forward_batch(b)
            if int8 is not None:
                q8_diff.append(float((int8.forward_batch(b).logits - model.forward_batch(b).logits).abs().max()))
            for _ in range(repeats):
                t = time.perf_counter()
                model.forward_batch(b)
                fp32.append(1000 * (time.perf_counter() - t))
                t = time.perf_counter()
                fast.forward_batch(b)
                onnx.append(1000 * (time.perf_counter() - t))
                if int8 is not None:
                    t = time.perf_counter()
                    int8.forward_batch(b)
                    q8.append(1000 * (time.perf_counter() - t))
        for c in cases[: min(len(cases), 12)]:
            t = time.perf_counter()
            predict(model, c, calibration=cal, cache=cache)
            e2e_fp32.append(1000 * (time.perf_counter() - t))
            t = time.perf_counter()
            predict(fast, c, calibration=cal, cache=cache)  # type: ignore[arg-type]
            e2e_fast.append(1000 * (time.perf_counter() - t))
    return {"predict_ms_fp32": statistics.median(fp32), "predict_ms_fast": statistics.median(onnx),
            "predict_ms_fp32_end_to_end": statistics.median(e2e_fp32),
            "predict_ms_fast_end_to_end": statistics.median(e2e_fast), "predict_speed_cases": len(data),
            "predict_ms_int8": statistics.median(q8) if q8 else None,
            "int8_logit_max_abs_diff": max(q8_diff) if q8_diff else None,
            "predict_speed_threads": torch.get_num_threads()}


def _int8(model: Any) -> Any:
    """The alternative the fast path was chosen against: PyTorch's dynamic int8 quantisation of the Linear layers
    (None where this PyTorch build has no quantised engine)."""
    import copy
    import warnings

    try:
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch's deprecation notice for its quantised tensors
            return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8).eval()
    except (RuntimeError, ImportError, AttributeError):
        return None


def auroc_delta(run: Path, cohort: Path, progress: bool) -> dict[str, Any]:
    """AUROC through onnxruntime and PyTorch on ``cohort``'s test split, and the largest logit difference."""
    from workbench.data.cache import PreprocessCache, default_cache_dir
    from workbench.data.case import load_cases
    from workbench.metrics import auroc
    from workbench.runtime.encode import encode_cases
    from workbench.runtime.fast import FastModel
    from workbench.runtime.inference import predict_logits
    from workbench.runtime.run import load_run, site_dirs_of

    model, _ = load_run(run)
    cases = [c for s in site_dirs_of(cohort) for c in load_cases(s) if c.split == "test"]
    data = encode_cases(cases, _tokenizer(model), cache=PreprocessCache(default_cache_dir()),
                        modalities=model.modalities, max_length=model.config.text.max_length, progress=progress,
                        desc="test split")
    ref = predict_logits(model, data)["logits"]
    fast = FastModel(run, model)
    got = np.concatenate([fast.forward_batch({k: v for k, v in b.items() if k != "label"}).logits.numpy()
                          for b in data.batches(64)])
    y = np.asarray(data.labels)
    a_fp32, a_fast = auroc(y, ref), auroc(y, got)
    return {"auroc_fp32": a_fp32, "auroc_fast": a_fast, "auroc_delta_fast": a_fast - a_fp32,
            "logit_max_abs_diff_fast": float(np.abs(ref - got).max()), "auroc_cases": len(y),
            "auroc_cohort": cohort.name}


def write_service_node(node: Path, run: Path, *, site: str, port: int, pacs_port: int, steps: int,
                       quiet_s: float, retry_s: float = 30.0) -> Path:
    """A node folder whose node.toml has a ``[service]`` table (listening on ``port``, SRs to ``pacs_port``) and
    an empty notes drop folder."""
    from workbench.service.config import service_toml

    (node / "service" / "notes").mkdir(parents=True, exist_ok=True)
    (node / "node.toml").write_text(f'[node]\nname = "{site}"\nsite_dir = "{node}"\n\n' + service_toml(
        run, site=site, port=port, pacs_port=pacs_port, steps=steps, quiet_s=quiet_s, retry_s=retry_s))
    return node


def upload_studies(pacs: Any, cases: list[Any], node: Path, marks: Path, progress: bool) -> list[str]:
    """Each case into the PACS as a hospital's study (its CT and the radiologist's point mark SR), its note dropped
    in the node's notes folder by accession number; the studies' Orthanc IDs, in the cases' order."""
    import pydicom

    from workbench.runtime.study import write_point_mark

    marks.mkdir(parents=True, exist_ok=True)
    studies = []
    for i, case in enumerate(_progress(cases, progress, "upload")):
        files = sorted(Path(case.series_dir).iterdir())
        ct0 = pydicom.dcmread(files[0], stop_before_pixels=True)
        if case.note:
            (node / "service" / "notes" / f"{ct0.AccessionNumber}.txt").write_text(case.note, encoding="utf-8")
        for f in [*files, write_point_mark(files[0], case.nodule_lps_mm, marks / f"mark{i}.dcm")]:
            sid = pacs.upload(f)["ParentStudy"]
        studies.append(sid)
    return studies


def own_srs(pacs: Any, study_id: str) -> list[dict[str, Any]]:
    """The report SRs this service sent into the PACS for one study (Orthanc's instance records)."""
    from workbench.service.worker import OWN_SR_MANUFACTURER

    return [i for i in pacs.instances_of(study_id, "SR")
            if str(pacs.get(f"/instances/{i['ID']}/simplified-tags").get("Manufacturer", "")).startswith(
                OWN_SR_MANUFACTURER)]


@dataclass
class ServiceRig:
    node: Path
    pacs: Any  # workbench.service.pacs_sandbox.OrthancSandbox
    studies: list[str]  # Orthanc's study ids, in the order of the cases
    serve: Any  # workbench.service.process.ServeProcess, not yet started


@contextmanager
def service_rig(work: Path, run: Path, cases: list[Any], *, steps: int, progress: bool = False,
                **node: Any) -> Iterator[ServiceRig]:
    """An Orthanc on loopback holding ``cases`` as studies (CT and the radiologist's mark; each note in the node's
    drop folder) and a node configured to serve them (``node``: more ``[service]`` settings); on the way out the
    service is stopped by its PID, then Orthanc. Shared by this bench, the fault burst and the PHI scan."""
    from workbench.service.pacs_sandbox import OrthancSandbox, free_port
    from workbench.service.process import ServeProcess

    node_dir, port = work / "node", free_port()
    with OrthancSandbox(work / "pacs", modalities={"workbench": ("WORKBENCH", port)}) as pacs:
        write_service_node(node_dir, run, site=cases[0].site, port=port, pacs_port=pacs.dicom_port, steps=steps,
                           **node)
        studies = upload_studies(pacs, cases, node_dir, work / "marks", progress)
        rig = ServiceRig(node_dir, pacs, studies, ServeProcess(node_dir, work / "serve.log"))
        try:
            yield rig
        finally:
            rig.serve.stop()


def service_batch(run: Path, cohort: Path, n: int, steps: int, progress: bool) -> dict[str, Any]:
    """``n`` studies through Orthanc and ``workbench serve`` (module docstring)."""
    work = _work() / "batch"
    shutil.rmtree(work, ignore_errors=True)
    cases = ct_cases(cohort, n)
    with service_rig(work, run, cases, steps=steps, progress=progress, quiet_s=3.0) as rig:
        node, pacs, studies, serve = rig.node, rig.pacs, rig.studies, rig.serve
        try:
            serve.start()
            t0 = time.monotonic()
            sender = threading.Thread(target=lambda: [pacs.send("workbench", studies[i:i + SEND_CHUNK], 1800)
                                                      for i in range(0, len(studies), SEND_CHUNK)], daemon=True)
            sender.start()
            finished = _wait_finished(node, len(studies), serve.proc, progress)
            wall = time.monotonic() - t0
            sender.join(60)
        finally:
            serve.stop()
        duplicated = sum(max(0, len(own_srs(pacs, sid)) - 1) for sid in studies)
    done = sorted((node / "service" / "done").iterdir())
    quarantined = sorted((node / "service" / "quarantine").iterdir())
    stages: dict[str, list[float]] = {k: [] for k in ("receive", "load", "preprocess", "predict", "explain", "report",
                                                      "store", "measure", "uncertainty")}
    engines = set()
    for d in done:
        r = json.loads((d / "result.json").read_text())
        t = r.get("timings_ms", {})
        meta = json.loads((d / "study.json").read_text())
        newest = max(f.stat().st_mtime for f in (d / "dicom").iterdir())
        stages["receive"].append(1000 * (newest - meta["first_received"]))
        stages["load"].append(t.get("load", 0.0))
        stages["preprocess"].append(t.get("preprocess", 0.0))
        stages["predict"].append(t.get("forward", t.get("predict", 0.0)))
        for k in ("explain", "report", "measure", "uncertainty"):
            stages[k].append(t.get(k, 0.0))
        state = json.loads((d / "state.json").read_text())
        stages["store"].append(state.get("store_ms", 0.0))
        engines.add(r.get("engine"))
    return {"studies": len(studies), "done": len(done), "quarantined": len(quarantined),
            "lost": len(studies) - finished, "duplicated": duplicated,
            "studies_per_min": 60 * finished / wall if wall > 0 else None, "batch_wall_s": round(wall, 1),
            "stage_ms": {k: round(statistics.median(v), 1) if v else None for k, v in stages.items()},
            "quarantine_reasons": [json.loads((q / "reason.json").read_text())["reason"] for q in quarantined][:10],
            "engine": sorted(e for e in engines if e), "explain_steps": steps}


def _progress(items: list[Any], on: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=not on)


def _wait_finished(node: Path, n: int, proc: Any, progress: bool, stall_s: float = 600.0) -> int:
    """Wait until ``n`` studies are done or quarantined (or nothing moved for ``stall_s``); returns how many are."""
    from tqdm import tqdm

    from workbench.service.inbox import folder_counts

    last, last_t = -1, time.monotonic()
    with tqdm(total=n, desc="studies", disable=not progress) as bar:
        while True:
            c = folder_counts(node / "service")
            k = c["done"] + c["quarantine"]
            bar.update(k - bar.n)
            if k >= n or proc.poll() is not None:
                return k
            if k != last:
                last, last_t = k, time.monotonic()
            elif time.monotonic() - last_t > stall_s:
                return k
            time.sleep(1.0)


def full_test_split(progress: bool = True) -> Path:
    """The full preset's training cohort's test split alone (``full-seed0``'s test cases, the same pixels, notes and
    labels), rendered without the other 80% of the cohort: each case's split is known from its sampled truth before
    anything is drawn; cases ``full-seed0`` already rendered are copied from it."""
    import csv
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from workbench.atomic import atomic_write, write_text
    from workbench.bench.common import cohort_config
    from workbench.cohort.generate import _ROWS_DIR, MANIFEST_COLUMNS, _case_task, sites_for
    from workbench.cohort.sample import case_id_for, case_truth

    out = cohort_cache_root() / "full-seed0-test-split"
    if (out / "cohort.json").is_file():
        return out
    config = cohort_config("full", 0)
    full = cohort_cache_root() / "full-seed0"
    sites = sites_for(config)
    wanted, tasks = [], []
    for si, site in enumerate(sites):
        for ci in range(config.n_patients):
            if case_truth(site, si, ci, config.seed, config.truth).split != "test":
                continue
            cid = case_id_for(site, ci)
            wanted.append((site.name, cid))
            rows = out / site.name / _ROWS_DIR / f"{cid}.json"
            done = full / site.name / _ROWS_DIR / f"{cid}.json"
            if rows.is_file():
                continue
            if done.is_file():
                rows.parent.mkdir(parents=True, exist_ok=True)
                if (full / site.name / "dicom" / cid).is_dir():
                    shutil.copytree(full / site.name / "dicom" / cid, out / site.name / "dicom" / cid,
                                    dirs_exist_ok=True)
                shutil.copy(done, rows)
                continue
            (out / site.name / "dicom").mkdir(parents=True, exist_ok=True)
            tasks.append((site, si, ci, config.seed, str(out / site.name), config.truth))
    with ProcessPoolExecutor(max_workers=2) as pool:
        for _ in tqdm(pool.map(_case_task, tasks, chunksize=1), total=len(tasks), desc="full test split",
                      disable=not progress):
            pass
    truths = []
    for site in sites:
        recs = [json.loads((out / site.name / _ROWS_DIR / f"{cid}.json").read_text()) for s, cid in wanted
                if s == site.name]
        with atomic_write(out / site.name / "manifest.csv") as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
            w.writeheader()
            w.writerows(r["row"] for r in recs)
        write_text(out / site.name / "notes.jsonl", "".join(json.dumps(r["note"]) + "\n" for r in recs if r["note"]))
        truths += [r["truth"] for r in recs]
    write_text(out / "truth.jsonl", "".join(json.dumps(t) + "\n" for t in truths))
    write_text(out / "cohort.json", json.dumps({"request": {"preset": "full", "seed": 0, "subset": "test split"},
                                                "n_cases": len(truths)}, indent=2))
    return out


def run_serve_bench(*, quick: bool = False, studies: int | None = None, cohort: str | Path | None = None,
                    steps: int = 32, progress: bool = True) -> dict[str, Any]:
    from workbench.service.pacs_sandbox import available

    why = available()
    if why:
        raise WorkbenchError(f"bench serve needs a PACS to send studies from: {why}")
    t0 = time.time()
    n = studies or (20 if quick else 200)
    run = node_run(progress)
    study_cohort = studies_cohort(n, progress)
    out: dict[str, Any] = {"run": "shipped readers (frozen) + fused head trained on the small preset, seed 0"}
    out.update(predict_speed(run, study_cohort))
    out["predict_fast_ratio"] = out["predict_ms_fast"] / out["predict_ms_fp32"]
    auc_cohort = Path(cohort) if cohort else cohort_cache_root() / "full-seed0"
    if not (auc_cohort / "cohort.json").is_file():
        auc_cohort = full_test_split(progress)
    out.update(auroc_delta(run, auc_cohort, progress))
    out.update(service_batch(run, study_cohort, n, steps, progress))
    out.update(envelope("quick" if quick else "full", time.time() - t0))
    return out


__all__ = ["auroc_delta", "ct_cases", "node_run", "own_srs", "predict_speed", "run_serve_bench", "service_batch",
           "studies_cohort", "upload_studies", "write_service_node"]
