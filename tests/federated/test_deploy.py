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


def test_node_doctor_names_an_unenrolled_key_and_a_wrong_ca(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from federated.node_agent import doctor, read_node

    state = tmp_path / "coordinator"
    init_pki(state / "pki", [])
    other = init_pki(tmp_path / "other_ca", [])  # a CA the SuperLink's certificate is not signed by
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.csv").write_text("case_id,series_dir\nh_a_0001,dicom/h_a_0001\n")
    node = tmp_path / "node"
    assert main(["node", "init", str(node), "--site-dir", str(site), "--name", "hospital_a"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("ecdsa-sha2-nistp256 ")
    config = ServerConfig(port=_port())
    server = start_superlink(state, config)
    try:
        link = f"127.0.0.1:{config.port}"
        first = doctor(node, link, state / "pki" / "ca.crt")
        by = {c.name: c for c in first.checks}
        assert by["site data"].ok and "1 cases" in by["site data"].detail
        assert by["SuperLink reachable"].ok and by["TLS certificate"].ok
        assert by["node key enrolled"].ok is False and "workbench server enroll" in by["node key enrolled"].fix
        assert not first.ok
        wrong = {c.name: c for c in doctor(node, link, other.ca_cert).checks}
        assert wrong["TLS certificate"].ok is False and "different CA" in wrong["TLS certificate"].fix
        assert wrong["node key enrolled"].ok is None  # not tried when TLS already failed
        assert main(["server", "enroll", str(state), str(node / "node.key.pub"), "--name", "hospital_a"]) == 0
        healed = doctor(node, link, state / "pki" / "ca.crt")
        assert healed.ok, healed.text()
        assert read_node(node).name == "hospital_a"
    finally:
        stop(server.pid)
    assert main(["node", "doctor", str(node), "--superlink", "127.0.0.1:1", "--ca", str(other.ca_cert)]) == 1
    assert "SuperLink reachable" in capsys.readouterr().out
