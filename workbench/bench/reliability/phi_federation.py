"""The PHI scan's federation: a small DP federation whose every node message is captured, in its own process.

It runs as ``python -m workbench.bench.reliability.phi_federation SPEC.json`` so that everything it prints (Flower,
Ray, the nodes' warnings) lands in one log file the scan reads, and so that its caches (``WORKBENCH_CACHE``: the
nodes' preprocessed crops) are written inside the scan's work folder, where they are scanned too. A client mod
(``federated.egress.capture_mod``) records every reply every node sends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.jsonout import write_json

RAY_START_FAILED = "timed out during startup"
CRASHED = "Simulation Runtime crashed"  # Flower's word for a dead simulation; its process may hang on after it


def cohort_view(cohort: Path, out: Path) -> Path:
    """The cohort's site folders as a view in ``out``: their small files copied, their DICOM folders linked. What a
    run writes into a site folder (the report's UID secret) lands in the view; the cached cohort stays untouched."""
    from workbench.runtime.run import site_dirs_of

    for site in site_dirs_of(cohort):
        dst = out / site.name
        dst.mkdir(parents=True, exist_ok=True)
        for f in site.iterdir():
            if f.is_file() and not (dst / f.name).exists():
                shutil.copy2(f, dst / f.name)
        if (site / "dicom").is_dir() and not (dst / "dicom").exists():
            (dst / "dicom").symlink_to((site / "dicom").resolve(), target_is_directory=True)
    for name in ("cohort.json", "truth.jsonl"):
        if (cohort / name).is_file() and not (out / name).exists():
            shutil.copy2(cohort / name, out / name)
    return out


def run_phi_federation(cohort: Path, out: Path, *, rounds: int, readers: str, modalities: str = "ct,notes",
                       timeout_s: float = 900.0) -> dict[str, Any]:
    """The federation in a child process (module docstring): ``out/run`` (the RUN), ``out/nodes`` (each node's
    state: ledger, audit log, local metrics), ``out/capture`` (every message), ``out/cache``, ``out/federate.log``.
    ``readers``: "shipped" (the shipped CT and note readers, frozen) or "test" (an untrained note reader, as the
    tests use: seconds instead of minutes); ``modalities`` "notes" leaves the CT out (no crops to preprocess)."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "done.json").is_file():
        return json.loads((out / "done.json").read_text())
    spec = {"cohort": str(cohort), "out": str(out), "rounds": rounds, "readers": readers, "modalities": modalities}
    write_json(out / "spec.json", spec)
    for _try in (1, 2):  # Ray's node can time out starting on a crowded machine: one more go, then the error
        code = _attempt(out, timeout_s)
        log = (out / "federate.log").read_text(errors="replace")
        if code == 0 or RAY_START_FAILED not in log:
            break
    if code != 0:
        raise WorkbenchError(f"phi_scan: the federation failed ({code}): {log[-1500:]}")
    return json.loads((out / "done.json").read_text())


def _attempt(out: Path, timeout_s: float) -> int:
    """One run of the federation's process (in a process group of its own, with Ray's); its exit code, or -9 when
    it hung or crashed and its group was stopped."""
    for d in ("run", "nodes", "capture", "ray_logs"):
        shutil.rmtree(out / d, ignore_errors=True)  # a killed run starts again: ledgers of benchmark data
    # Ray's session folder (its processes' logs) in a folder of its own: short, for Ray's socket paths, and copied
    # into ``out/ray_logs`` afterwards, so the scan reads every log the simulation wrote and no other run's
    ray_tmp = Path(tempfile.mkdtemp(prefix="phi-ray-"))
    env = {**os.environ, "WORKBENCH_CACHE": str(out / "cache"), "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmp)}
    try:
        with open(out / "federate.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "workbench.bench.reliability.phi_federation",
                                     str(out / "spec.json")], stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None:
                if time.monotonic() > deadline or CRASHED in (out / "federate.log").read_text(errors="replace"):
                    _stop_group(proc)
                    break
                time.sleep(2.0)
        for logs in ray_tmp.glob("ray/session_*/logs"):
            shutil.copytree(logs, out / "ray_logs" / logs.parent.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock", "sockets"), ignore_dangling_symlinks=True)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return proc.returncode if proc.returncode is not None else -9


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, to the process group this run started (the federation's process and Ray's)."""
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 20.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _main(spec_file: str) -> None:
    from federated.config import FedConfig
    from federated.egress import capture_mod, read_capture
    from federated.federate import run_federated

    spec = json.loads(Path(spec_file).read_text())
    out = Path(spec["out"])
    kw: dict[str, Any] = {}
    if spec["readers"] == "shipped":
        from workbench.models.shipped import shipped

        kw = {"ct_encoder": str(shipped("ct_reader")), "text_encoder": str(shipped("note_reader"))}
    else:
        from workbench.models.model import ModelConfig, build_model
        from workbench.train.pretrain_text import save_note_reader

        save_note_reader(build_model(ModelConfig(modalities=("notes",))), out / "reader", "test reader, not pretrained")
        kw = {"text_encoder": str(out / "reader")}
    # a few rounds, a tiny budget: what is written and sent is the same as in a long run, only less of it
    fed = FedConfig(cohort=spec["cohort"], num_server_rounds=int(spec["rounds"]), dp=True, dp_epsilon=1.0,
                    dp_budget=2.0, dp_sample_rate=0.5, dp_epochs=2.0, dp_train="head", dp_optimizer="sgd",
                    dp_lr=0.5, state_dir=str(out / "nodes"), progress=False, run_tag="phi-scan", modalities=spec["modalities"], **kw)
    summary = run_federated(fed, out / "run", client_mods=[capture_mod(out / "capture")])
    sent = read_capture(out / "capture")
    write_json(out / "done.json", {"messages": len(sent), "rounds": summary["rounds"], "errors": summary["errors"],
                                   "sites": summary["sites"]})


if __name__ == "__main__":
    _main(sys.argv[1])
