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


def _checkpoint_round(run: Path) -> int:
    from safetensors import safe_open

    f = run / "checkpoint" / "global.safetensors"
    try:
        with safe_open(str(f), "pt") as g:
            return int((g.metadata() or {}).get("round", 0))
    except Exception:  # noqa: BLE001 - not written yet, or being replaced
        return 0


def test_a_superlink_killed_mid_run_is_restarted_and_the_run_resumes(tiny_cohort, tmp_path: Path,  # noqa: ANN001
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A SuperNode over TLS with node auth (one, to keep the suite's time: every Flower message starts a fresh
    ClientApp process); the SuperLink (and the ServerApp it runs) is killed once round 1 is checkpointed,
    restarted on the same database, and `workbench server run --resume` finishes round 2."""
    from federated.deploy import submit

    state, run = tmp_path / "coordinator", tmp_path / "run"
    init_pki(state / "pki", [])
    config = ServerConfig(port=_port())
    server = start_superlink(state, config)
    started, submitted = [], None
    try:
        for site in ("hospital_a",):
            key = node_key(tmp_path / site, site)
            assert main(["server", "enroll", str(state), str(key.public_key), "--name", site]) == 0
            started.append(start_supernode(tmp_path / f"{site}.log", f"127.0.0.1:{config.port}",
                                           state / "pki" / "ca.crt", key.private_key,
                                           f"site-dir='{tiny_cohort / site}' state-dir='{tmp_path / site / 'state'}'",
                                           _port()))
        _wait(lambda: [n["status"] for n in nodes(state, config)] == ["online"], "the node online")
        submitted = submit(state, run, 2)
        deadline = time.monotonic() + 600
        while _checkpoint_round(run) < 1:
            assert submitted.poll() is None or _checkpoint_round(run) >= 1, (run / "submit.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "round 1 not checkpointed within 600 s"
            time.sleep(0.5)
        stop(server.pid)  # the SuperLink dies with round 2 under way; its children (the ServerApp) with it
        stop(submitted.pid)
        server = start_superlink(state, config)  # same database: the nodes stay enrolled and reconnect
        _wait(lambda: [n["status"] for n in nodes(state, config)] == ["online"], "the node back online")
        capsys.readouterr()
        assert main(["server", "run", str(state), "--out", str(run), "--rounds", "2", "--resume",
                     "--timeout", "600"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["rounds_completed"] == 2 and summary["final"]
        record = json.loads((run / "rounds.json").read_text())
        assert [r["round"] for r in record["rounds"]] == [1, 2]
        assert record["resumed"] == [{"after_round": 1, "from": "checkpoint/global.safetensors"}]
        assert all(r["trained"] == 1 for r in record["rounds"])
        assert (run / "model" / "model.safetensors").is_file() and _checkpoint_round(run) == 2
    finally:
        for s in [*started, server]:
            stop(s.pid)
        if submitted is not None:
            stop(submitted.pid)
