"""``workbench serve NODE_DIR``: the node's inference service, until it is stopped (SIGTERM or Ctrl-C).

On start it carries on what a killed service left in ``work/`` (``inbox``: nothing lost, nothing sent twice),
then listens for DICOM (``listener``) and, every ``poll_s``, takes each study that has been quiet for ``quiet_s``
and scores it (``worker``; a study a killed service was receiving gets ``quiet_s`` from the listener's start, for
the PACS to push it again, before it counts as complete); studies the PACS or EHR did not take are sent again
after ``retry_s``. Every step is one line of the hash-chained ``NODE_DIR/service/service_audit.jsonl`` (study
pseudonyms, stages, reasons: no identifier), which ``workbench node audit NODE_DIR --verify`` checks with the
node's other logs. A stop finishes the study in hand, closes the listener and exits 0; ``service/status.json``
says what is where.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.atomic import write_text
from workbench.errors import WorkbenchError
from workbench.service.config import ServiceConfig, read_service
from workbench.service.inbox import Inbox
from workbench.service.worker import Outcome, process

AUDIT_FILE = "service_audit.jsonl"


def say(line: str) -> None:
    """One line to stdout, flushed: a service's output usually goes to a log file or the journal."""
    print(line, flush=True)


class Service:
    """The service's state in one process: config, inbox, audit, listener (started by ``start``)."""

    def __init__(self, cfg: ServiceConfig, echo: Callable[[str], None] = say) -> None:
        from federated.audit import append
        from workbench.report.source import node_secret
        from workbench.runtime.study import study_case_id

        self.cfg, self.echo = cfg, echo
        self.inbox = Inbox(cfg.root)
        secret = node_secret(cfg.node_dir)
        self.key_of: Callable[[str], str] = lambda uid: study_case_id(uid, secret)
        self._audit_lock = threading.Lock()
        self._append = append
        self.stop = threading.Event()
        self.server: Any = None
        self.retry_at: dict[str, float] = {}
        self.outcomes: list[Outcome] = []

    def audit(self, body: dict[str, Any]) -> None:
        with self._audit_lock:
            self._append(self.cfg.root / AUDIT_FILE, {**body, "time": round(time.time(), 3)})

    def start(self) -> None:
        if not (self.cfg.run / "model").is_dir():
            raise WorkbenchError(f"[service] run = {self.cfg.run}: not a RUN folder (no model/ in it)")
        self.inbox.sweep(self.cfg.fhir_outbox)  # a killed service's temporaries, before anything is written again
        for work in self.inbox.in_flight():  # a killed service's studies first, before anything new arrives
            self.audit({"event": "resumed", "study": work.name})
            self._handle(work)
        from workbench.service.listener import start_listener

        try:
            self.server = start_listener(self.cfg, self.inbox, self.key_of, self.audit)
        except OSError as exc:
            raise WorkbenchError(f"cannot listen on {self.cfg.host}:{self.cfg.port} ({exc}); is another service "
                                 "using the port? set [service] port in node.toml") from None
        waiting = self.inbox.quiet_from_now()  # a killed service's part-received studies: the PACS pushes them again
        self.audit({"event": "started", "ae_title": self.cfg.ae_title, "port": self.cfg.port, "pid": os.getpid(),
                    "incoming": len(waiting)})
        self.echo(f"workbench serve: {self.cfg.ae_title} listening on {self.cfg.host}:{self.cfg.port}; scoring with "
                  f"{self.cfg.run} ({self.cfg.site}'s calibrators); studies in {self.cfg.root}")
        self.write_status()

    def step(self) -> int:
        """Take and score every quiet study, send again what is due; returns how many studies moved."""
        moved = 0
        for key in self.inbox.quiet(self.cfg.quiet_s):
            if self.stop.is_set():
                break
            work = self.inbox.take(key)
            self.audit({"event": "taken", "study": work.name, "files": len(list((work / "dicom").glob("*.dcm")))})
            moved += self._handle(work)
        now = time.monotonic()
        for work in self.inbox.in_flight():
            if self.stop.is_set():
                break
            if work.name in self.retry_at and self.retry_at[work.name] <= now:
                moved += self._handle(work)
        if moved:
            self.write_status()
        return moved

    def _handle(self, work: Path) -> int:
        t = time.perf_counter()
        out = process(self.cfg, self.inbox, work, self.audit)
        self.outcomes.append(out)
        secs = time.perf_counter() - t
        if out.status == "retry":
            self.retry_at[work.name] = time.monotonic() + self.cfg.retry_s
            self.echo(f"{out.key}: not delivered, again in {self.cfg.retry_s:.0f} s: {out.detail}")
            return 0
        self.retry_at.pop(work.name, None)
        if out.status == "done" and out.result is not None:
            r = out.result
            iv = r.get("interval")
            span = f" [{100 * iv[0]:.0f}%, {100 * iv[1]:.0f}%]" if iv else ""
            self.echo(f"{out.key}: done, risk {100 * r['probability']:.0f}%{span}, SR sent to "
                      f"{self.cfg.pacs.ae_title} ({secs:.1f} s)")
        else:
            self.echo(f"{out.key}: quarantined: {out.detail}")
        return 1

    def write_status(self) -> None:
        write_text(self.cfg.root / "status.json", json.dumps({
            "pid": os.getpid(), "ae_title": self.cfg.ae_title, "port": self.cfg.port, "run": str(self.cfg.run),
            "site": self.cfg.site, "counts": self.inbox.counts(), "time": time.time()}) + "\n")

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self.audit({"event": "stopped", "pid": os.getpid()})
        self.write_status()


def serve(node_dir: str | Path, *, poll_s: float = 0.5, max_s: float | None = None,
          echo: Callable[[str], None] = say) -> dict[str, Any]:
    """Run the service until SIGTERM/SIGINT (or ``max_s`` seconds); returns the inbox counts."""
    svc = Service(read_service(node_dir), echo)

    def on_signal(signum: int, _frame: Any) -> None:
        svc.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    svc.start()
    t0 = time.monotonic()
    try:
        while not svc.stop.is_set() and (max_s is None or time.monotonic() - t0 < max_s):
            if not svc.step():
                svc.stop.wait(poll_s)
    finally:
        svc.close()
    counts = svc.inbox.counts()
    echo(f"workbench serve stopped: {counts['done']} done, {counts['quarantine']} quarantined, "
         f"{counts['work'] + counts['incoming']} waiting")
    return counts


def status(node_dir: str | Path) -> dict[str, Any]:
    """What is where (folder counts), each quarantined study's reason, and the last status the service wrote."""
    cfg = read_service(node_dir)
    inbox = Inbox(cfg.root)
    reasons = {}
    for q in sorted((cfg.root / "quarantine").iterdir()):
        f = q / "reason.json"
        if f.is_file():
            reasons[q.name] = json.loads(f.read_text(encoding="utf-8"))["reason"]
    last = cfg.root / "status.json"
    return {"counts": inbox.counts(), "quarantined": reasons,
            "last_status": json.loads(last.read_text(encoding="utf-8")) if last.is_file() else None}


__all__ = ["AUDIT_FILE", "Service", "serve", "status"]
