"""A local rehearsal of a hospital federation (like NVFlare's proof-of-concept mode), with faults on request.

``workbench poc COHORT --out RUN`` does on 127.0.0.1 what a coordinator and its hospitals do across sites: a CA and
the SuperLink's certificate (``RUN/coordinator/pki``), one node folder per site with its key pair and ``node.toml``
(``RUN/nodes/<name>/``: its ledger, audit logs, SuperNode log), enrolment, a real SuperLink with TLS and node
authentication, one real guarded SuperNode per node, and the federation submitted through the coordinator's named
connection (the app and recipe of ``workbench server run``). On request it injects what hospital deployments
suffer:

- ``--kill-node K@R``: node K (1-based) is killed once round R-1 is checkpointed (round R under way); the server
  must count it failed and go on (``node-wait-s``, ``round-timeout-s``, ``min-nodes``), never wait for it.
- ``--restart-server-at R``: the SuperLink (and the ServerApp it runs) is killed once round R-1 is checkpointed
  (after any node killed at or before R has had ``settle_s`` to be noticed), started again on the same database,
  and the run resumed from the last checkpoint (``rounds.json`` says where).
- ``--intruder``: a SuperNode with a key the coordinator never enrolled tries to join; it must be refused.

Every process started is stopped by PID (children too) whatever happens. The JSON (``RUN/poc.json``) has the
contracted keys: ``rounds_completed``, ``nodes_started``, ``nodes_finished``, ``tls``, ``node_auth``,
``intruder_rejected``, ``resumed``, ``audit_verified``, ``wall_s``, ``round_s``. More nodes than the cohort has
sites reuse the sites in turn (a timing rehearsal; ``sites_reused`` says so).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.atomic import write_text
from workbench.errors import WorkbenchError


@dataclass(frozen=True)
class PocConfig:
    nodes: int = 3
    rounds: int = 3
    kill_node: tuple[int, int] | None = None  # (node K, round R)
    restart_server_at: int | None = None
    intruder: bool = False
    run_config: dict[str, str] = field(default_factory=dict)  # extra [tool.flwr.app.config] values
    node_wait_s: float = 20.0  # how long a round waits for a missing node before going on without it
    round_timeout_s: float = 300.0  # replies later than this count as failed
    online_timeout_s: float = 120.0  # nodes to connect, the intruder to give up, the SuperLink to come back
    timeout_s: float = 3600.0  # the whole federation
    settle_s: float = 5.0


def parse_kill(text: str) -> tuple[int, int]:
    """``K@R`` -> (K, R)."""
    k, sep, r = text.partition("@")
    try:
        node, rnd = int(k), int(r)
    except ValueError:
        node = rnd = 0
    if not sep or node < 1 or rnd < 1:
        raise WorkbenchError(f"--kill-node {text!r}: expected K@ROUND, e.g. 2@2 (node 2 killed at round 2)")
    return node, rnd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def checkpoint_round(run: Path) -> int:
    """The round of ``RUN/checkpoint/global.safetensors`` (0: none yet, or being replaced)."""
    from safetensors import safe_open

    f = run / "checkpoint" / "global.safetensors"
    try:
        with safe_open(str(f), "pt") as g:
            return int((g.metadata() or {}).get("round", 0))
    except Exception:  # noqa: BLE001 - not written yet, or mid-replace
        return 0


def _sites(cohort: Path) -> list[Path]:
    sites = sorted(p for p in Path(cohort).iterdir() if (p / "manifest.csv").is_file()) if Path(cohort).is_dir() else []
    if not sites:
        raise WorkbenchError(f"{cohort}: no site folder with a manifest.csv (a cohort from `workbench cohort`)")
    return sites


def _wait(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise WorkbenchError(f"poc: {what} not within {timeout_s:.0f} s")
        time.sleep(1.0)


def _final(run: Path) -> bool:
    try:
        return bool(json.loads((run / "rounds.json").read_text()).get("final"))
    except (OSError, ValueError):
        return False


def _running(list_runs: Callable[[], list[dict[str, Any]]]) -> bool:
    """Is any run on the SuperLink still pending, starting or running? (A SuperLink that does not answer: no.)"""
    try:
        listed = list_runs()
    except WorkbenchError:
        return False
    return any(str(r.get("status", "")).split(":")[0] in ("pending", "starting", "running") for r in listed)


def _ledgers(nodes_dir: Path) -> dict[str, dict[str, Any]]:
    """Per node: its ledger against its audit log. A resumed run must be the same run to the ledger (one run
    name, one count release) and every update the node sent must be a ledger entry, once."""
    from federated.ledger import read_ledger

    out = {}
    for f in sorted(nodes_dir.glob("*/*/privacy_ledger.json")):
        led = read_ledger(f)
        audit_rows = [json.loads(x)["body"] for x in (f.parent / "audit.jsonl").read_text().splitlines()] \
            if (f.parent / "audit.jsonl").is_file() else []
        runs = sorted({e.run_id for e in led.entries})
        out[f.parent.parent.name] = {
            "runs": len(runs), "count_releases": sum(e.kind == "count" for e in led.entries),
            "dp_sgd_releases": sum(e.kind == "dp-sgd" for e in led.entries),
            "audit_sent": sum(1 for r in audit_rows if "sent" in r),
            "rounds": [e.round for e in led.entries if e.kind == "dp-sgd"],
            "epsilon_run": round(led.epsilon(runs[0]), 4) if runs else 0.0}
    return out


def run_poc(cohort: str | Path, out: str | Path, cfg: PocConfig = PocConfig(),
            say: Callable[[str], None] = print) -> dict[str, Any]:
    """The rehearsal (module docstring); returns (and writes to ``RUN/poc.json``) its JSON."""
    from federated import audit
    from federated.deploy import (
        ServerConfig,
        enroll,
        nodes,
        runs,
        start_superlink,
        start_supernode,
        stop,
        submit,
    )
    from federated.node_agent import init_node
    from federated.pki import check_certificate, init_pki, node_key

    if cfg.nodes < 1 or cfg.rounds < 1:
        raise WorkbenchError("poc: --nodes and --rounds must be at least 1")
    if cfg.kill_node and cfg.kill_node[0] > cfg.nodes:
        raise WorkbenchError(f"--kill-node {cfg.kill_node[0]}@{cfg.kill_node[1]}: there are only {cfg.nodes} nodes")
    for what, rnd in (("--kill-node", cfg.kill_node[1] if cfg.kill_node else None),
                      ("--restart-server-at", cfg.restart_server_at)):
        if rnd is not None and not 2 <= rnd <= cfg.rounds:
            raise WorkbenchError(f"{what}: round {rnd} must be between 2 and --rounds {cfg.rounds} (a fault after "
                                 "a checkpointed round)")
    t0 = time.monotonic()
    sites = _sites(Path(cohort))
    out = Path(out).resolve()
    if (out / "poc.json").exists() or (out / "run").exists():
        raise WorkbenchError(f"{out}: already holds a rehearsal; choose a new --out")
    state, run = out / "coordinator", out / "run"
    pki = init_pki(state / "pki", [])
    server_cfg = ServerConfig(port=free_port(), start_timeout_s=cfg.online_timeout_s)
    names = [sites[i % len(sites)].name + (f"-{i // len(sites) + 1}" if cfg.nodes > len(sites) else "")
             for i in range(cfg.nodes)]
    started: list[Any] = []
    node_procs: dict[str, Any] = {}
    submitted = None
    result: dict[str, Any] = {"nodes_started": 0, "nodes_finished": 0, "rounds_completed": 0, "tls": False,
                              "node_auth": False, "intruder_rejected": None, "resumed": False,
                              "audit_verified": False, "round_s": [], "sites_reused": cfg.nodes > len(sites)}
    try:
        say(f"coordinator: CA and SuperLink certificate in {pki.ca_cert.parent}")
        server = start_superlink(state, server_cfg)
        started.append(server)
        link = f"127.0.0.1:{server_cfg.port}"
        cert = check_certificate(pki.ca_cert.parent / "superlink.crt", pki.ca_cert, "127.0.0.1")
        result["tls"] = cert.problem is None
        for i, name in enumerate(names):
            node_dir = out / "nodes" / name
            c, _ = init_node(node_dir, sites[i % len(sites)], name)
            enroll(state, c.private_key.with_name(c.private_key.name + ".pub"), name, server_cfg)
            p = start_supernode(node_dir / "supernode.log", link, pki.ca_cert, c.private_key, c.node_config_arg(),
                                free_port(), node_dir=node_dir)
            started.append(p)
            node_procs[name] = p
        say(f"{len(names)} nodes enrolled and started: {', '.join(names)}")
        _wait(lambda: sum(n.get("status") == "online" for n in nodes(state, server_cfg)) == len(names),
              f"all {len(names)} nodes online", cfg.online_timeout_s)
        result["nodes_started"] = len(names)
        if cfg.intruder:
            key = node_key(out / "intruder", "intruder")
            bad = start_supernode(out / "intruder" / "supernode.log", link, pki.ca_cert, key.private_key,
                                  "site-dir='/nonexistent'", free_port(), max_retries=1)
            started.append(bad)
            _wait(lambda: bad.proc.poll() is not None, "the unenrolled node to be turned away", cfg.online_timeout_s)
            log = (out / "intruder" / "supernode.log").read_text(encoding="utf-8", errors="replace")
            result["intruder_rejected"] = (bad.proc.returncode != 0 and "2004" in log
                                           and len(nodes(state, server_cfg)) == len(names))
            say(f"intruder: {'refused by the SuperLink' if result['intruder_rejected'] else 'NOT refused'}")
        # an enrolled node's key is required (node auth) when an unknown key is refused and only ours are listed
        result["node_auth"] = "--enable-supernode-auth" in " ".join(server.proc.args) and (
            result["intruder_rejected"] is not False)

        extra = {"dp": "true", "dp-epsilon": "1.0",  # nodes under the privacy card's egress policy train with DP
                 "node-wait-s": str(cfg.node_wait_s), "round-timeout-s": str(cfg.round_timeout_s), **cfg.run_config}
        submitted = submit(state, run, cfg.rounds, extra)
        say(f"federation submitted: {cfg.rounds} rounds into {run}")
        deadline = t0 + cfg.timeout_s
        last_round, last_t = 0, time.monotonic()
        killed_at: float | None = None
        restarted = False
        while True:
            rnd = checkpoint_round(run)
            if rnd > last_round:
                now = time.monotonic()
                result["round_s"] += [round((now - last_t) / (rnd - last_round), 2)] * (rnd - last_round)
                last_round, last_t = rnd, now
                say(f"round {rnd} of {cfg.rounds} checkpointed")
            if cfg.kill_node and killed_at is None and rnd >= cfg.kill_node[1] - 1:
                victim = names[cfg.kill_node[0] - 1]
                stop(node_procs[victim].pid, timeout_s=0.5)
                killed_at = time.monotonic()
                say(f"fault: node {victim} killed with round {rnd + 1} under way")
            if (cfg.restart_server_at and not restarted and rnd >= cfg.restart_server_at - 1
                    and (killed_at is None or cfg.kill_node[1] > cfg.restart_server_at  # type: ignore[index]
                         or time.monotonic() - killed_at >= cfg.settle_s)):
                stop(server.pid)
                stop(submitted.pid)
                say(f"fault: SuperLink killed with round {rnd + 1} under way; restarting it on its database")
                server = start_superlink(state, server_cfg)
                started.append(server)
                alive = sum(p.proc.poll() is None for p in node_procs.values())
                _wait(lambda n=alive: sum(x.get("status") == "online" for x in nodes(state, server_cfg)) >= n,
                      "the surviving nodes back online", cfg.online_timeout_s)
                submitted = submit(state, run, cfg.rounds, extra, resume=True)
                restarted, last_t = True, time.monotonic()
                say(f"run resumed after round {rnd}")
            if submitted.poll() is not None:
                if _final(run) or not _running(lambda: runs(state, server_cfg)):
                    break
                if not result.get("stream_ended_early"):
                    result["stream_ended_early"] = True
                    say("the run's log stream ended before the run; following it on the SuperLink")
            if time.monotonic() > deadline:
                raise WorkbenchError(f"poc: the federation did not finish within {cfg.timeout_s:.0f} s; its log: "
                                     f"{run / 'submit.log'}")
            time.sleep(0.5)
        record = json.loads((run / "rounds.json").read_text()) if (run / "rounds.json").is_file() else {}
        rounds = record.get("rounds", [])
        result["rounds_completed"] = len(rounds)
        result["final"] = bool(record.get("final"))
        result["resumed"] = bool(record.get("resumed"))
        result["trained_per_round"] = [r.get("trained", 0) for r in rounds]
        alive = [n for n, p in node_procs.items() if p.proc.poll() is None]
        last = rounds[-1]["nodes"] if rounds else []
        result["nodes_finished"] = sum(1 for r in last if "error" not in r and "refused" not in r and r.get("site"))
        result["nodes_alive"] = len(alive)
        logs = [f for d in sorted((out / "nodes").iterdir()) for f in audit.find_logs(d)]
        verified = {}
        for f in logs:
            try:
                verified[str(f.relative_to(out))] = audit.verify(f)
            except ValueError:
                verified[str(f.relative_to(out))] = -1
        result["audit_logs"] = verified
        result["audit_verified"] = bool(verified) and all(v > 0 for v in verified.values())
        result["ledgers"] = _ledgers(out / "nodes")
        result["ledger_consistent"] = bool(result["ledgers"]) and all(
            v["runs"] <= 1 and v["dp_sgd_releases"] == v["audit_sent"] for v in result["ledgers"].values())
        result["flwr_exit_code"] = submitted.returncode
    finally:
        for p in reversed(started):
            stop(p.pid)
        if submitted is not None:
            stop(submitted.pid)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    result.update({"nodes": cfg.nodes, "rounds": cfg.rounds, "kill_node": list(cfg.kill_node or []) or None,
                   "restart_server_at": cfg.restart_server_at, "intruder": cfg.intruder,
                   "cohort": Path(cohort).name, "sites": [s.name for s in sites]})
    write_text(out / "poc.json", json.dumps(result, indent=1) + "\n")
    return result


__all__ = ["PocConfig", "checkpoint_round", "free_port", "parse_kill", "run_poc"]
