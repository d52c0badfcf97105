"""Property-based fuzzing of what reads hostile input: the DICOM loader, the SR/SEG mark reader, the note
de-identifier, the tokenizer (and the note file reader before it) and the site ingest.

Hypothesis draws each case as a JSON-ready spec (``fuzz_specs``) from a fixed seed, so a run is the same cases
every time; it is driven here, not by pytest, and never sees an exception: the harness judges each case and
counts it. The case runs in a worker process (``fuzz_targets``), because what it guards against would take
the bench down with it: a decoder that segfaults on damaged bytes, a loop that never returns, an allocation
sized by an absurd header. A case is judged:

- **refused**, or **ok**: a ``WorkbenchError`` with a message, or a normal return (what the library should do);
- **crash**: any other exception, a ``WorkbenchError`` without a message, a result no caller can use (a
  ``PropertyViolation``: a singular affine, NaN HU, counts that do not add up) or the worker dying;
- **hang**: no answer within ``time_bound_s`` (the worker is killed and started again);
- **memory**: ``MemoryError`` under the worker's address-space limit (``memory_bound_mb`` above what it holds
  after warm-up). Memory failures are counted with the crashes in ``keys`` and listed apart in the detail.

Crashes are grouped by signature (exception type and the innermost workbench frame); the first spec of each is
kept under ``work/crashes`` to be replayed (``replay``). A target's finished figures are kept under ``work``
with a fingerprint of the code, so a killed run redoes only unfinished targets, and any code change redoes all.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from workbench.jsonout import write_json

TARGET_ORDER = ("dicom", "sr_mark", "deid", "tokenizer", "note_file", "ingest")
FULL_CASES = {"dicom": 1500, "sr_mark": 900, "deid": 1100, "tokenizer": 800, "note_file": 500, "ingest": 450}
QUICK_CASES = {"dicom": 80, "sr_mark": 50, "deid": 60, "tokenizer": 40, "note_file": 30, "ingest": 40}
STATUSES = ("ok", "refused", "crash", "hang", "memory", "unbuilt")
START_TIMEOUT_S = 600.0  # the worker imports torch, MONAI, transformers: minutes on a loaded machine
BUILD_TIMEOUT_S = 120.0  # copying and mutating the seeds (harness work, not the case's)


@dataclass(frozen=True)
class FuzzConfig:
    """How many cases per target and the bounds each case is judged by."""

    cases: dict[str, int] = field(default_factory=lambda: dict(FULL_CASES))
    seed: int = 20_240_601
    time_bound_s: float = 10.0
    memory_bound_mb: int = 2048

    @classmethod
    def for_mode(cls, quick: bool) -> FuzzConfig:
        return cls(cases=dict(QUICK_CASES if quick else FULL_CASES))


@dataclass
class Outcome:
    """One case's judgement: ``ok`` | ``refused`` | ``crash`` | ``hang`` | ``memory`` | ``unbuilt``."""

    status: str
    detail: str = ""
    signature: str = ""
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------------- worker side


def _signature(exc: BaseException) -> str:
    """Exception type at the innermost frame of workbench code outside the fuzz harness (else the innermost);
    a wrapped exception (MONAI's RuntimeError around the real one) is named by its root cause."""
    names = [type(exc).__name__]
    while exc.__cause__ is not None:
        exc = exc.__cause__
        names.append(type(exc).__name__)
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/workbench/" in f.filename and "/bench/reliability/fuzz" not in f.filename]
    picked = ours or list(frames)
    place = f"{picked[-1].filename.split('/workbench/')[-1]}:{picked[-1].lineno} {picked[-1].name}" if picked else "?"
    return f"{' <- '.join(names)} at {place}"


def judge(thunk: Callable[[], object]) -> Outcome:
    """Call one case and say what it was (the rules in the module docstring)."""
    from workbench.bench.reliability.fuzz_targets import PropertyViolation
    from workbench.errors import WorkbenchError

    start = time.perf_counter()
    try:
        thunk()
        status, detail, sig = "ok", "", ""
    except WorkbenchError as exc:
        text = " ".join(str(exc).split())
        status, detail, sig = ("refused", text[:300], "") if text else \
            ("crash", f"{type(exc).__name__} without a message", _signature(exc))
    except MemoryError as exc:
        status, detail, sig = "memory", f"MemoryError {str(exc)[:200]}", _signature(exc)
    except PropertyViolation as exc:
        status, detail, sig = "crash", f"property: {str(exc)[:300]}", "property: " + _signature(exc)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - judging every exception is the point (a pyo3 panic included)
        status, detail, sig = "crash", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}", _signature(exc)
    return Outcome(status, detail, sig, time.perf_counter() - start)


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _worker(conn: Connection, seeds: str | None, scratch: str, memory_bound_mb: int, warm: list[str]) -> None:
    """The worker loop: warm up (imports, tokenizer, each target once on its seed), cap the address space,
    then judge cases until told to stop."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import resource
    import warnings

    warnings.filterwarnings("ignore")
    from workbench.bench.reliability.fuzz_targets import PLANTED, SEED_SPECS, TARGETS, Context

    if warm:  # the real targets load torch; one thread each, the machine is shared
        import torch

        torch.set_num_threads(1)
    ctx = Context(Path(seeds) if seeds else None, Path(scratch))
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    table = {**TARGETS, **PLANTED}
    seed_results = {name: sorted({judge(table[name](spec, ctx)).status for spec in SEED_SPECS[name]})
                    for name in warm}
    baseline = _vm_bytes()
    if memory_bound_mb > 0 and baseline:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = baseline + memory_bound_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    conn.send(("ready", {"seed_cases": seed_results, "baseline_mb": baseline // 2**20}))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        name, spec = msg
        try:
            thunk = table[name](spec, ctx)
        except Exception as exc:  # noqa: BLE001 - the mutation failed: harness work, not a case
            conn.send(("unbuilt", f"{type(exc).__name__}: {exc}"[:300]))
            continue
        conn.send(("built", ""))
        conn.send(("done", asdict(judge(thunk))))


# ----------------------------------------------------------------------------------------------- harness


class Harness:
    """One worker process at a time; a case that hangs or kills it gets a fresh one for the next case."""

    def __init__(self, seeds: Path | None, scratch: Path, *, time_bound_s: float = 10.0, memory_bound_mb: int = 2048,
                 warm: tuple[str, ...] = ()) -> None:
        self.seeds, self.scratch = seeds, scratch
        self.time_bound_s, self.memory_bound_mb, self.warm = time_bound_s, memory_bound_mb, list(warm)
        self.ready: dict[str, Any] = {}
        self.starts = 0
        self._proc: Any = None
        self._conn: Connection | None = None

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> Connection:
        from workbench.errors import WorkbenchError

        mp = multiprocessing.get_context("spawn")  # fork after torch's threads start can deadlock
        parent, child = mp.Pipe()
        self._proc = mp.Process(target=_worker, daemon=True, name="workbench-fuzz-worker",
                                args=(child, str(self.seeds) if self.seeds else None,
                                      str(self.scratch / f"w{self.starts}"), self.memory_bound_mb, self.warm))
        self._proc.start()
        child.close()
        self.starts += 1
        if not parent.poll(START_TIMEOUT_S):
            self._kill()
            raise WorkbenchError(f"the fuzz worker did not start within {START_TIMEOUT_S:.0f} s")
        try:
            _, self.ready = parent.recv()
        except EOFError:
            self._kill()
            raise WorkbenchError("the fuzz worker died while warming up (seed files broken?)") from None
        self._conn = parent
        return parent

    def _kill(self) -> None:
        if self._proc is not None and self._proc.pid is not None:
            self._proc.kill()
            self._proc.join(10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(10)
            except (OSError, ValueError):
                pass
        self._kill()

    def run(self, target: str, spec: dict[str, Any]) -> Outcome:
        """Judge one case in the worker (started on first use and after a hang or a death)."""
        conn = self._conn or self._start()
        start = time.perf_counter()
        try:
            conn.send((target, spec))
            if not conn.poll(BUILD_TIMEOUT_S):
                self._kill()
                return Outcome("unbuilt", f"mutation took over {BUILD_TIMEOUT_S:.0f} s")
            kind, text = conn.recv()
            if kind == "unbuilt":
                return Outcome("unbuilt", text)
            start = time.perf_counter()
            if not conn.poll(self.time_bound_s):
                self._kill()
                return Outcome("hang", f"no answer within {self.time_bound_s:g} s", f"hang in {target}",
                               time.perf_counter() - start)
            _, result = conn.recv()
            return Outcome(**result)
        except (EOFError, OSError, BrokenPipeError):
            code = None
            if self._proc is not None:
                self._proc.join(5)
                code = self._proc.exitcode
            self._kill()
            return Outcome("crash", f"the worker died (exit code {code})", f"worker died (exit code {code}) in {target}",
                           time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------- driving


@dataclass
class Tally:
    """One target's counts, slowest case and crashes by signature (with the first spec of each)."""

    target: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    max_s: float = 0.0
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    refusal_kinds: dict[str, int] = field(default_factory=dict)
    slowest: dict[str, Any] = field(default_factory=dict)
    unbuilt: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome, spec: dict[str, Any], crash_dir: Path) -> None:
        self.counts[outcome.status] += 1
        if outcome.status == "unbuilt" and len(self.unbuilt) < 5:
            self.unbuilt.append(outcome.detail)
        if outcome.status != "unbuilt" and outcome.seconds > self.max_s:
            self.max_s = outcome.seconds
            self.slowest = {"seconds": round(outcome.seconds, 3), "status": outcome.status, "spec": _short(spec, 120)}
        if outcome.status == "refused":
            kind = outcome.detail.split(": ")[-1][:60]  # the reason, without the file that varies per case
            self.refusal_kinds[kind] = self.refusal_kinds.get(kind, 0) + 1
        if outcome.status in ("crash", "hang", "memory"):
            sig = outcome.signature or outcome.detail
            seen = self.failures.get(sig)
            if seen is None:
                path = crash_dir / f"{self.target}-{len(self.failures):03d}.json"
                crash_dir.mkdir(parents=True, exist_ok=True)
                write_json(path, {"target": self.target, "status": outcome.status, "detail": outcome.detail,
                                  "signature": sig, "spec": spec})
                self.failures[sig] = {"status": outcome.status, "detail": outcome.detail, "count": 1,
                                      "spec_file": str(path), "spec": _short(spec)}
            else:
                seen["count"] += 1

    @property
    def cases(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "unbuilt")

    def figures(self) -> dict[str, Any]:
        top = sorted(self.refusal_kinds.items(), key=lambda kv: -kv[1])[:8]
        return {"cases": self.cases, **self.counts, "max_case_s": round(self.max_s, 3),
                "failures": list(self.failures.values()), "top_refusals": dict(top), "slowest": self.slowest,
                "unbuilt_examples": self.unbuilt}


def _short(obj: Any, limit: int = 300) -> Any:
    """A spec for the JSON report: long strings (a huge note, many bytes) cut to their head and length."""
    if isinstance(obj, str) and len(obj) > limit:
        return f"{obj[:limit]}... ({len(obj):,} chars)"
    if isinstance(obj, dict):
        return {k: _short(v, limit) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_short(v, limit) for v in obj]
    return obj


def drive(target: str, n: int, seed: int, each: Callable[[dict[str, Any]], None]) -> None:
    """Hypothesis draws ``n`` specs for ``target`` from ``seed`` (generation only: no database, no shrinking, no
    deadline; ``each`` judges and never raises, so Hypothesis never stops early on a failure)."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as fixed_seed

    from workbench.bench.reliability.fuzz_specs import SPECS

    @fixed_seed(seed)
    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate], verbosity=Verbosity.quiet,
              suppress_health_check=list(HealthCheck))
    @given(SPECS[target]())
    def inner(spec: dict[str, Any]) -> None:
        each(spec)

    inner()


def code_fingerprint() -> str:
    """A digest of the workbench sources: kept per-target figures are reused only for the same code."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.blake2b(digest_size=12)
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def fuzz_target(harness: Harness, target: str, n: int, seed: int, crash_dir: Path,
                tick: Callable[[], None] = lambda: None) -> Tally:
    """``n`` cases of one target through the harness."""
    tally = Tally(target)
    for old in crash_dir.glob(f"{target}-*.json"):  # a previous run's failures of this target
        old.unlink()
    if n <= 0:
        return tally

    def each(spec: dict[str, Any]) -> None:
        tally.add(harness.run(target, spec), spec, crash_dir)
        tick()

    drive(target, n, seed, each)
    return tally


def run(*, quick: bool, work: Path, progress: bool, config: FuzzConfig | None = None) -> dict[str, Any]:
    """Every target's cases; the contract's ``keys.fuzz`` (cases, crashes with memory failures, hangs) and the
    detail per target."""
    from tqdm import tqdm

    from workbench.bench.reliability.fuzz_seeds import prepare_seeds

    cfg = config or FuzzConfig.for_mode(quick)
    seeds = prepare_seeds(work, progress=progress)
    mode = "quick" if quick else "full"
    fingerprint = code_fingerprint()
    crash_dir = work / "crashes" / mode
    figures: dict[str, Any] = {}
    todo = []
    for i, target in enumerate(TARGET_ORDER):
        kept = work / f"{target}-{mode}.json"
        if kept.is_file():
            old = json.loads(kept.read_text())
            if old.get("fingerprint") == fingerprint and old.get("config") == asdict(cfg):
                figures[target] = old["figures"]
                continue
        todo.append((i, target, kept))
    bar = tqdm(total=sum(cfg.cases[t] for _, t, _ in todo), desc="fuzz", unit="case", disable=not progress)
    with Harness(seeds, work / "scratch", time_bound_s=cfg.time_bound_s, memory_bound_mb=cfg.memory_bound_mb,
                 warm=TARGET_ORDER) as harness:
        for i, target, kept in todo:
            bar.set_postfix_str(target)
            start = time.perf_counter()
            tally = fuzz_target(harness, target, cfg.cases[target], cfg.seed + i, crash_dir, bar.update)
            figures[target] = {**tally.figures(), "seconds": round(time.perf_counter() - start, 1)}
            write_json(kept, {"fingerprint": fingerprint, "config": asdict(cfg), "figures": figures[target]})
        worker_starts = harness.starts
        seed_cases = harness.ready.get("seed_cases", {})
    bar.close()
    total = {k: sum(f[k] for f in figures.values()) for k in ("cases", *STATUSES)}
    signatures = [{"target": t, **c} for t, f in figures.items() for c in f["failures"]]
    return {
        "keys": {"fuzz": {"cases": total["cases"], "crashes": total["crash"] + total["memory"],
                          "hangs": total["hang"]}},
        "engine": "hypothesis (generation phase only, fixed seed) driving a spawned worker process",
        "bounds": {"time_s": cfg.time_bound_s, "memory_mb": cfg.memory_bound_mb,
                   "memory_rule": "MemoryError under RLIMIT_AS = the worker's warm size + memory_mb; counted as "
                                  "crashes in keys, apart in totals.memory"},
        "seed": cfg.seed,
        "totals": total,
        "targets": figures,
        "failures": signatures,
        "seed_cases": seed_cases,
        "worker_starts": worker_starts,
        "crash_specs": str(crash_dir),
    }


def replay(spec_file: Path, seeds: Path) -> Outcome:
    """A kept failure's case again, in this process (to debug it or write its regression test)."""
    import tempfile

    from workbench.bench.reliability.fuzz_targets import TARGETS, Context

    kept = json.loads(Path(spec_file).read_text())
    with tempfile.TemporaryDirectory(prefix="workbench-fuzz-") as tmp:
        ctx = Context(seeds, Path(tmp))
        return judge(TARGETS[kept["target"]](kept["spec"], ctx))
