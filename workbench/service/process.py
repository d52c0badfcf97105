"""``workbench serve NODE_DIR`` as a child process: what tests, ``bench serve`` and ``bench reliability`` start,
kill and restart, always by the child's own PID (never by a process name, which would reach another engineer's
service on a shared machine).

``start`` returns once the new process has written ``service/status.json`` with its PID: by then it has carried
on what a killed predecessor left in ``work/`` and its listener is up, so a PACS can send again. ``kill`` is a
SIGKILL (a crash or a power cut: nothing is finished), ``stop`` a SIGTERM (the study in hand is finished).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from workbench.errors import WorkbenchError


class ServeProcess:
    """``workbench serve NODE_DIR`` as a child process (its output appended to ``log``), stopped by its PID."""

    def __init__(self, node: Path, log: Path) -> None:
        self.node, self.log = Path(node), Path(log)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 180.0) -> ServeProcess:
        """Start it and wait (bounded) until it says it listens: its status.json, newer than before, with its PID."""
        status = self.node / "service" / "status.json"
        before = status.stat().st_mtime if status.exists() else 0.0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", str(self.node)],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WorkbenchError(f"workbench serve exited ({self.proc.returncode}): {self._tail()}")
            if status.exists() and status.stat().st_mtime > before and _pid_in(status) == self.proc.pid:
                return self
            time.sleep(0.25)
        self.stop()
        raise WorkbenchError(f"workbench serve did not start within {timeout_s:.0f} s: {self._tail()}")

    def kill(self) -> None:
        """SIGKILL: the service gets no chance to finish anything (a crash or a power cut)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait (then SIGKILL); the exit code, None when it had to be killed or was not running."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        code, self.proc = self.proc.returncode, None
        return code

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.is_file() else ""


def _pid_in(status: Path) -> int | None:
    try:
        return int(json.loads(status.read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):  # being replaced this instant (it is written atomically)
        return None


__all__ = ["ServeProcess"]
