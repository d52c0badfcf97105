"""Flower's deployment engine for real, on 127.0.0.1: a SuperLink with TLS and node authentication
(``federated/deploy.py``), a node enrolled with ``workbench server enroll`` connects and is listed online, an
unenrolled key is refused by the SuperLink, and every process started is stopped by PID (children included) within
bounded waits."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import psutil
import pytest

from federated.deploy import ServerConfig, nodes, start_superlink, start_supernode, stop
from federated.pki import init_pki, node_key
from workbench.cli import main

BOUND_S = 60.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1.0)
    raise AssertionError(f"{what}: not within {BOUND_S:.0f} s")


def test_an_enrolled_node_connects_over_tls_and_an_unenrolled_key_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "coordinator"
    init_pki(state / "pki", ["coordinator.example"])
    config = ServerConfig(port=_port())
    started = []
    server = start_superlink(state, config)
    started.append(server)
    try:
        family = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
        enrolled = node_key(tmp_path / "hospital_a", "hospital_a")
        intruder = node_key(tmp_path / "intruder", "intruder")
        assert main(["server", "enroll", str(state), str(enrolled.public_key), "--name", "hospital_a"]) == 0
        assert "enrolled hospital_a as node" in capsys.readouterr().out
        address, ca = f"127.0.0.1:{config.port}", state / "pki" / "ca.crt"
        started.append(start_supernode(tmp_path / "a.log", address, ca, enrolled.private_key,
                                       f"site-dir='{tmp_path}'", _port()))
        bad = start_supernode(tmp_path / "x.log", address, ca, intruder.private_key, f"site-dir='{tmp_path}'",
                              _port(), max_retries=1)
        started.append(bad)
        _wait(lambda: [n["status"] for n in nodes(state, config)] == ["online"], "the enrolled node online")
        _wait(lambda: bad.proc.poll() is not None, "the unenrolled SuperNode to give up")
        log = (tmp_path / "x.log").read_text()
        assert "Failed to activate SuperNode" in log and "2004" in log  # refused by the SuperLink, not a crash
        assert len(nodes(state, config)) == 1  # the intruder was never added
        assert main(["server", "status", str(state), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert [n["status"] for n in status["nodes"]] == ["online"]
        assert status["certificate"]["problem"] is None and status["certificate"]["days_left"] >= 396
    finally:
        for s in reversed(started):
            stop(s.pid)
    for pid in [s.pid for s in started] + sorted(family):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
