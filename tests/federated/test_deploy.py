"""Flower's deployment engine for real, on 127.0.0.1: a SuperLink with TLS and node authentication
(``federated/deploy.py``), a node enrolled with ``workbench server enroll`` connects and is listed online, an
unenrolled key is refused by the SuperLink, and every process started is stopped by PID (children included) within
bounded waits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from federated.deploy import ServerConfig, nodes, start_superlink, start_supernode, stop
from federated.pki import init_pki, node_key
from federated.poc import free_port
from workbench.cli import main

BOUND_S = 60.0


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
    config = ServerConfig(port=free_port())
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
                                       f"site-dir='{tmp_path}'", free_port()))
        bad = start_supernode(tmp_path / "x.log", address, ca, intruder.private_key, f"site-dir='{tmp_path}'",
                              free_port(), max_retries=1)
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
    config = ServerConfig(port=free_port())
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


def test_poc_rehearsal_survives_a_dead_node_and_a_superlink_restart_and_refuses_an_intruder(
        tiny_cohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    """`workbench poc` on the tiny cohort: three guarded SuperNodes over TLS with node auth. The SuperLink (with its
    ServerApp) is killed when round 2 starts, comes back on its database, and the run resumes from round 1's
    checkpoint: all three nodes complete rounds 1 and 2. Node 2 is killed when round 3 starts; round 3 goes on with
    the two live nodes. An unenrolled key is refused. Every node's ledger holds each update it sent exactly once,
    under one run name, within the run's epsilon (a round 2 whose reply was lost with the SuperLink is in it too);
    every audit chain verifies; nothing it started is left running. No evaluation requests, to keep the suite's
    time (every Flower message starts a fresh ClientApp process)."""
    out = tmp_path / "poc"
    t0 = time.monotonic()
    code = main(["poc", str(tiny_cohort), "--out", str(out), "--nodes", "3", "--rounds", "3", "--kill-node", "2@3",
                 "--restart-server-at", "2", "--intruder", "--node-wait-s", "10", "--round-timeout-s", "240",
                 "--config", "fraction-evaluate=0", "--timeout", "900", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert time.monotonic() - t0 < 900  # bounded, far under Flower's 12 h message TTL
    assert code == 0, result
    assert result["rounds_completed"] == 3 and result["final"] and result["nodes_started"] == 3
    assert result["trained_per_round"] == [3, 3, 2] and result["nodes_finished"] == 2
    assert result["tls"] and result["node_auth"] and result["intruder_rejected"] is True
    assert result["resumed"] and result["audit_verified"] and result["ledger_consistent"]
    led = result["ledgers"]
    assert {k: v["runs"] for k, v in led.items()} == {"hospital_a": 1, "hospital_b": 1, "hospital_c": 1}
    assert all(v["count_releases"] == 1 and v["epsilon_run"] <= 1.0 + 1e-6 for v in led.values())
    assert set(led["hospital_b"]["rounds"]) == {1, 2}  # the dead node released rounds 1 and 2 (maybe 2 twice)
    assert all(led[s]["rounds"][-1] == 3 for s in ("hospital_a", "hospital_c"))
    record = json.loads((out / "run" / "rounds.json").read_text())
    assert record["resumed"] == [{"after_round": 1, "from": "checkpoint/global.safetensors"}]
    assert json.loads((out / "poc.json").read_text())["rounds_completed"] == 3
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, leftovers


def test_node_guards_refuse_a_leaky_reply_and_an_app_the_node_does_not_allow(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Four guarded SuperNodes over TLS with node auth run a deliberately leaky app (tests/federated/leaky_app):
    hospital_c's reply carries a cohort statistic outside the privacy card's table and its guard replaces it with an
    error; hospital_d allows only another app version and never loads it; hospital_a and _b's replies reach the
    server. Each refusal and each reply sent is in the node's hash-chained guard audit."""
    from federated import audit
    from federated.deploy import submit
    from federated.node_agent import NodeConfig, init_node, read_node, write_node_toml
    from federated.node_guard import APP_NOT_ALLOWED, EGRESS_REFUSED, GUARD_AUDIT

    state, out = tmp_path / "coordinator", tmp_path / "run"
    init_pki(state / "pki", [])
    config = ServerConfig(port=free_port())
    server = start_superlink(state, config)
    started, submitted = [server], None
    sites = ("hospital_a", "hospital_b", "hospital_c", "hospital_d")
    try:
        for site in sites:
            (tmp_path / "data" / site).mkdir(parents=True)
            node, _ = init_node(tmp_path / site, tmp_path / "data" / site, site)
            if site == "hospital_d":
                node = NodeConfig(**{**node.__dict__, "allowed_versions": ("9.9.9",)})
                write_node_toml(node)
            assert main(["server", "enroll", str(state), str(node.private_key) + ".pub", "--name", site]) == 0
            node = read_node(tmp_path / site)
            started.append(start_supernode(tmp_path / f"{site}.log", f"127.0.0.1:{config.port}",
                                           state / "pki" / "ca.crt", node.private_key, node.node_config_arg(),
                                           free_port(), node_dir=node.node_dir))
        _wait(lambda: [n["status"] for n in nodes(state, config)] == ["online"] * 4, "four nodes online")
        submitted = submit(state, out, 1, {"leak-site": "hospital_c", "out": str(out / "replies.json"),
                                           "nodes": "4"}, app=Path(__file__).parent / "leaky_app")
        submitted.wait(timeout=240)
        result = json.loads((out / "replies.json").read_text())
        assert result["nodes"] == 4 and len(result["replies"]) == 4, result
        errors = sorted((r["error"]["code"], r["error"]["reason"]) for r in result["replies"] if "error" in r)
        sent = [r["metrics"] for r in result["replies"] if "metrics" in r]
        assert sent == [{"num-examples": 10.0}] * 2  # the others' round went on
        assert [code for code, _ in errors] == [EGRESS_REFUSED, APP_NOT_ALLOWED]
        assert "hospital_c" in errors[0][1] and "mean_patient_age" in errors[0][1]
        assert "hospital_d" in errors[1][1] and "9.9.9" in errors[1][1]
        assert not any("mean_patient_age" in json.dumps(r) for r in sent)
        logs = {site: [json.loads(x)["body"] for x in (tmp_path / site / GUARD_AUDIT).read_text().splitlines()]
                for site in sites}
        for site in sites:
            assert audit.verify(tmp_path / site / GUARD_AUDIT) == 1
        assert logs["hospital_c"][0]["refused"] == "egress" and logs["hospital_c"][0]["keys"] == ["mean_patient_age"]
        assert logs["hospital_d"][0]["refused"] == "app not allowed"
        assert logs["hospital_a"][0]["sent"]["metrics"] == ["num-examples"] and logs["hospital_a"][0]["arrays"]
    finally:
        for s in reversed(started):
            stop(s.pid)
        if submitted is not None:
            stop(submitted.pid)
