"""``workbench pki ...`` and ``workbench server ...``: certificates, node keys and the coordinator's SuperLink.

Kept apart from ``cli.py`` so that the deployment commands read as one page; the work is in ``federated/pki.py``
and ``federated/deploy.py``.
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from typing import Any


def _cmd_pki_init(a: argparse.Namespace) -> int:
    from federated.pki import init_pki

    done = init_pki(a.dir, a.host or [], force=a.force)
    print(f"CA:        {done.ca_cert} (valid until {done.ca_not_after:%Y-%m-%d}; ca.key stays here, never copy it)")
    print(f"SuperLink: {done.server_cert} for {', '.join(done.hosts)} (valid until {done.server_not_after:%Y-%m-%d})")
    print(f"Send {done.ca_cert} to every hospital; `workbench server start STATE_DIR` expects this folder as "
          "STATE_DIR/pki.")
    return 0


def _cmd_pki_node(a: argparse.Namespace) -> int:
    from federated.pki import node_key

    key = node_key(a.dir, a.name, force=a.force)
    print(f"private key: {key.private_key} (stays at this node, mode 0600)")
    print(f"public key:  {key.public_key}; send this line to the coordinator for `workbench server enroll`:")
    print(key.public_line)
    return 0


def _server_config(a: argparse.Namespace) -> Any:
    from federated.deploy import ServerConfig

    saved = Path(a.state_dir) / "server.json"
    base = json.loads(saved.read_text()) if saved.is_file() else {}
    given = {k: v for k, v in (("host", getattr(a, "host", None)), ("port", getattr(a, "port", None))) if v is not None}
    return ServerConfig(**{**base, **given})


def _cmd_server_start(a: argparse.Namespace) -> int:
    from federated.deploy import start_superlink, stop

    config = _server_config(a)
    started = start_superlink(a.state_dir, config)
    print(f"SuperLink serving TLS on {config.host}:{config.port} with node authentication (PID {started.pid}, log "
          f"{started.log}); Ctrl-C or SIGTERM stops it and its children", flush=True)

    def _term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        assert started.proc is not None
        code = started.proc.wait()
        print(f"SuperLink exited with code {code}; see {started.log}")
        return 1 if code else 0
    except KeyboardInterrupt:
        stop(started.pid)
        print("SuperLink stopped")
        return 0


def _cmd_server_enroll(a: argparse.Namespace) -> int:
    from federated.deploy import enroll

    out = enroll(a.state_dir, a.pubkey, a.name, _server_config(a))
    print(f"enrolled {a.name} as node {out.get('node-id')}")
    return 0


def _cmd_server_run(a: argparse.Namespace) -> int:
    import subprocess

    from federated.deploy import stop, submit
    from workbench.errors import WorkbenchError

    extra = _config_items(a.config)
    out = Path(a.out)
    proc = submit(a.state_dir, out, a.rounds, extra, resume=a.resume)
    print(f"submitted to the SuperLink of {a.state_dir} ({'resuming ' if a.resume else ''}{a.rounds} rounds into "
          f"{out}; log {out / 'submit.log'})", flush=True)
    try:
        code = proc.wait(timeout=a.timeout)
    except subprocess.TimeoutExpired:
        stop(proc.pid)
        raise WorkbenchError(f"the run did not finish within {a.timeout:.0f} s; its last round is checkpointed: "
                             f"`workbench server run {a.state_dir} --out {out} --rounds {a.rounds} --resume`") from None
    rounds_file = out / "rounds.json"
    record = json.loads(rounds_file.read_text()) if rounds_file.is_file() else {}
    done = len(record.get("rounds", []))
    summary = {"rounds_completed": done, "rounds": a.rounds, "final": bool(record.get("final")),
               "resumed": record.get("resumed", []), "flwr_exit_code": code}
    print(json.dumps(summary))
    if code or not summary["final"]:
        print(f"the run stopped after {done} of {a.rounds} rounds; continue it with `workbench server run "
              f"{a.state_dir} --out {out} --rounds {a.rounds} --resume`")
        return 1
    return 0


def _cmd_server_status(a: argparse.Namespace) -> int:
    from federated.deploy import nodes
    from federated.pki import check_certificate

    state, config = Path(a.state_dir), _server_config(a)
    pki = state / "pki"
    cert = check_certificate(pki / "superlink.crt", pki / "ca.crt", "127.0.0.1")
    report = {"address": f"{config.host}:{config.port}", "certificate": {
        "names": list(cert.sans), "not_after": cert.not_after.isoformat(), "days_left": cert.days_left,
        "problem": cert.problem}, "nodes": nodes(state, config)}
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"SuperLink {report['address']}: certificate for {', '.join(cert.sans)}, {cert.days_left} days left"
              + (f" -- {cert.problem}" if cert.problem else ""))
        for n in report["nodes"]:
            print(f"  node {n.get('node-id')}: {n.get('status')} (online since {n.get('online-at')})")
        if not report["nodes"]:
            print("  no node enrolled: `workbench server enroll STATE_DIR PUBKEY --name SITE`")
    return 0


def _cmd_node_init(a: argparse.Namespace) -> int:
    from federated.node_agent import init_node

    c, public = init_node(a.node_dir, a.site_dir, a.name, epsilon_budget=a.epsilon_budget, force=a.force)
    print(f"node {c.name}: {c.node_dir / 'node.toml'} (site data {c.site_dir}, epsilon budget {c.epsilon_budget:g})")
    print("send this public key to the coordinator for `workbench server enroll`:")
    print(public)
    return 0


def _node_link(a: argparse.Namespace) -> tuple[Any, str, Path]:
    """The node's config with --superlink/--ca remembered in node.toml (so `doctor` and restarts need no flags)."""
    import dataclasses

    from federated.node_agent import read_node, write_node_toml
    from workbench.errors import WorkbenchError

    c = read_node(a.node_dir)
    given = {k: v for k, v in (("superlink", a.superlink), ("ca", Path(a.ca).resolve() if a.ca else None)) if v}
    if given:
        c = dataclasses.replace(c, **given)
        write_node_toml(c)
    if not c.superlink or c.ca is None:
        raise WorkbenchError(f"{a.node_dir}: give --superlink HOST:PORT and --ca CA once (they are then remembered)")
    return c, c.superlink, c.ca


def _cmd_node_start(a: argparse.Namespace) -> int:
    from federated.node_agent import run_supernode

    c, link, ca = _node_link(a)
    print(f"node {c.name}: SuperNode to {link} (TLS, CA {ca}, key {c.private_key}); Ctrl-C stops it", flush=True)
    return run_supernode(c, link, ca, a.port)


def _cmd_node_doctor(a: argparse.Namespace) -> int:
    from federated.node_agent import doctor
    from workbench.service.doctor import service_checks

    d = doctor(a.node_dir, a.superlink, a.ca)
    d.checks += service_checks(a.node_dir)  # the inference service's, when node.toml has a [service] table
    print(json.dumps(d.to_dict(), indent=1) if a.json else d.text())
    return 0 if d.ok else 1


def _cmd_node_audit(a: argparse.Namespace) -> int:
    from federated.audit import find_logs, verify
    from workbench.errors import WorkbenchError

    files = [Path(a.verify)] if a.verify else find_logs(a.node_dir)
    if not files:
        raise WorkbenchError(f"{a.node_dir}: no audit.jsonl (a node writes it from its first round)")
    broken = 0
    for f in files:
        if not f.is_file():
            raise WorkbenchError(f"{f}: no such audit log")
        try:
            n = verify(f)
            print(f"{f}: {n} entries, hash chain intact")
        except ValueError as exc:
            broken += 1
            print(f"{exc}: an entry was edited, dropped or reordered after it was written")
        if not a.verify:
            for line in f.read_text(encoding="utf-8").splitlines()[-a.last:]:
                print("  " + json.dumps(json.loads(line).get("body", {}), sort_keys=True)[:200])
    return 1 if broken else 0


def _cmd_node_status(a: argparse.Namespace) -> int:
    from federated.audit import find_logs
    from federated.ledger import read_ledger
    from federated.node_agent import read_node
    from workbench.errors import WorkbenchError

    c = read_node(a.node_dir)
    status: dict[str, Any] = {"node": c.name, "site_dir": str(c.site_dir), "superlink": c.superlink,
                              "ca": str(c.ca) if c.ca else None, "epsilon_budget": c.epsilon_budget,
                              "allowed_versions": list(c.allowed_versions), "egress_policy": c.egress_policy}
    ledgers = sorted(Path(a.node_dir).glob("**/privacy_ledger.json"))
    try:
        led = read_ledger(ledgers[0]) if ledgers else None
    except WorkbenchError:
        led = None
    status["epsilon_spent"] = led.epsilon() if led is not None else 0.0
    audits = find_logs(a.node_dir)
    last = audits[0].read_text(encoding="utf-8").splitlines()[-1:] if audits else []
    status["last_audit_entry"] = json.loads(last[0]).get("body") if last else None
    if a.json:
        print(json.dumps(status, indent=1))
    else:
        print(f"node {c.name}: data {c.site_dir}; SuperLink {c.superlink or 'not set'}; epsilon "
              f"{status['epsilon_spent']:.2f} of {c.epsilon_budget:g} spent; versions allowed "
              f"{', '.join(c.allowed_versions) or 'any'}; egress {c.egress_policy}")
        print(f"last audit entry: {json.dumps(status['last_audit_entry'])[:200] if last else 'none yet'}")
    return 0


def _config_items(items: list[str] | None) -> dict[str, str]:
    from workbench.errors import WorkbenchError

    extra = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(f"--config {item!r}: expected KEY=VALUE (a key of [tool.flwr.app.config])")
        extra[key.strip()] = value
    return extra


def _cmd_poc(a: argparse.Namespace) -> int:
    from federated.poc import PocConfig, parse_kill, run_poc

    cfg = PocConfig(nodes=a.nodes, rounds=a.rounds, kill_node=parse_kill(a.kill_node) if a.kill_node else None,
                    restart_server_at=a.restart_server_at, intruder=a.intruder, run_config=_config_items(a.config),
                    node_wait_s=a.node_wait_s, round_timeout_s=a.round_timeout_s, timeout_s=a.timeout)
    result = run_poc(a.cohort, a.out, cfg, say=(lambda s: None) if a.json else (lambda s: print(s, flush=True)))
    if a.json:
        print(json.dumps(result))
    else:
        print(f"rounds {result['rounds_completed']} of {a.rounds}; nodes started {result['nodes_started']}, "
              f"finished {result['nodes_finished']}; tls {result['tls']}, node auth {result['node_auth']}, "
              f"intruder rejected {result['intruder_rejected']}, resumed {result['resumed']}, audit verified "
              f"{result['audit_verified']}; {result['wall_s']:.0f} s, per round {result['round_s']} "
              f"({Path(a.out) / 'poc.json'})")
    ok = (result["rounds_completed"] == a.rounds and result["audit_verified"] and result.get("final")
          and all(result["trained_per_round"]))
    return 0 if ok else 1


def add_poc_parser(sub: Any) -> None:
    """``workbench poc``: the local rehearsal (``federated/poc.py``)."""
    p = sub.add_parser("poc", help="rehearse a hospital federation on 127.0.0.1: certificates, enrolled guarded "
                       "nodes over TLS, the run, and faults on request (kill a node, restart the SuperLink, an "
                       "intruder)")
    p.add_argument("cohort", help="a cohort folder (one node per site; more nodes reuse sites)")
    p.add_argument("--out", required=True, help="a new folder: coordinator/, nodes/<name>/, run/, poc.json")
    p.add_argument("--nodes", type=int, default=3, help="SuperNodes to start (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="federated rounds (default 3)")
    p.add_argument("--kill-node", metavar="K@ROUND", help="kill node K when round ROUND starts")
    p.add_argument("--restart-server-at", type=int, metavar="ROUND",
                   help="kill the SuperLink when round ROUND starts, restart it and resume the run")
    p.add_argument("--intruder", action="store_true", help="start a SuperNode whose key was never enrolled")
    p.add_argument("--config", action="append", metavar="KEY=VALUE", help="a key of [tool.flwr.app.config] (repeat)")
    p.add_argument("--node-wait-s", type=float, default=20.0, help="a round waits this long for a missing node "
                   "(default 20)")
    p.add_argument("--round-timeout-s", type=float, default=300.0, help="replies later than this fail (default 300)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up on the federation after this many seconds")
    p.add_argument("--json", action="store_true", help="print the result JSON only")
    p.set_defaults(func=_cmd_poc)


def add_node_parsers(nsub: Any) -> None:
    """``workbench node init | start | doctor`` beside the existing ``node ledger``."""
    ni = nsub.add_parser("init", help="this hospital's node: node.toml (data, budget, allowed versions, egress) "
                         "and its key pair")
    ni.add_argument("node_dir")
    ni.add_argument("--site-dir", required=True, help="the site's data folder (manifest.csv, dicom/, notes)")
    ni.add_argument("--name", required=True, help="the site's name, as the coordinator enrols it")
    ni.add_argument("--epsilon-budget", type=float, default=8.0, help="lifetime privacy budget (default 8)")
    ni.add_argument("--force", action="store_true")
    ni.set_defaults(func=_cmd_node_init)
    ns = nsub.add_parser("start", help="run this node's SuperNode (TLS, enrolled key) in the foreground")
    ns.add_argument("node_dir")
    ns.add_argument("--superlink", help="the coordinator's HOST:PORT (remembered in node.toml)")
    ns.add_argument("--ca", help="the coordinator's ca.crt (remembered in node.toml)")
    ns.add_argument("--port", type=int, default=9094, help="the SuperNode's local runtime port (default 9094)")
    ns.set_defaults(func=_cmd_node_start)
    nst = nsub.add_parser("status", help="this node's settings, epsilon spent against its budget, last audit entry")
    nst.add_argument("node_dir")
    nst.add_argument("--json", action="store_true")
    nst.set_defaults(func=_cmd_node_status)
    na = nsub.add_parser("audit", help="the node's hash-chained audit log: last entries; --verify checks the chain")
    na.add_argument("node_dir", help="the node's folder or state folder (finds audit.jsonl), or the log itself")
    na.add_argument("--verify", metavar="FILE", help="only check this log's hash chain (exit 1 when broken)")
    na.add_argument("--last", type=int, default=5, help="entries to print (default 5)")
    na.set_defaults(func=_cmd_node_audit)
    nd = nsub.add_parser("doctor", help="check SuperLink, TLS chain and expiry, enrolment, data, budget, version")
    nd.add_argument("node_dir")
    nd.add_argument("--superlink", help="check against this HOST:PORT instead of node.toml's")
    nd.add_argument("--ca", help="check with this CA instead of node.toml's")
    nd.add_argument("--json", action="store_true")
    nd.set_defaults(func=_cmd_node_doctor)


def add_deploy_parsers(sub: Any) -> None:
    """The ``pki`` and ``server`` commands on the main parser's subparsers."""
    p = sub.add_parser("pki", help="certificates and node keys for a deployed federation (TLS, node auth)")
    psub = p.add_subparsers(dest="pki_command", required=True)
    pi = psub.add_parser("init", help="a CA and the SuperLink's certificate (SANs: the hosts given + 127.0.0.1)")
    pi.add_argument("dir", help="the coordinator's pki folder (STATE_DIR/pki)")
    pi.add_argument("--host", action="append", help="a name or IP address nodes use to reach the SuperLink (repeat)")
    pi.add_argument("--force", action="store_true", help="replace an existing CA (every node must re-enrol)")
    pi.set_defaults(func=_cmd_pki_init)
    pn = psub.add_parser("node", help="a node's ECDSA key pair for SuperNode authentication; prints the public key")
    pn.add_argument("dir", help="the node's folder for its key (NODE_DIR)")
    pn.add_argument("--name", required=True, help="the site's name, as the coordinator enrols it")
    pn.add_argument("--force", action="store_true", help="replace an existing key (it must be enrolled again)")
    pn.set_defaults(func=_cmd_pki_node)

    s = sub.add_parser("server", help="the coordinator's SuperLink: start, enrol nodes, status")
    ssub = s.add_subparsers(dest="server_command", required=True)
    st = ssub.add_parser("start", help="run flower-superlink with TLS and node auth in the foreground (a service)")
    st.add_argument("state_dir", help="the coordinator's folder (pki/ from `workbench pki init`, the database, logs)")
    st.add_argument("--host", help="bind address (default 127.0.0.1)")
    st.add_argument("--port", type=int, help="port for Fleet, Control and Runtime APIs (default 9093)")
    st.set_defaults(func=_cmd_server_start)
    se = ssub.add_parser("enroll", help="enrol a node's public key so its SuperNode may connect")
    se.add_argument("state_dir")
    se.add_argument("pubkey", help="the node's node.key.pub (from `workbench pki node`)")
    se.add_argument("--name", required=True, help="the site's name")
    se.set_defaults(func=_cmd_server_enroll)
    sr = ssub.add_parser("run", help="submit the federated training app to this SuperLink; checkpoints every round; "
                         "--resume continues a failed or interrupted run from its last completed round")
    sr.add_argument("state_dir")
    sr.add_argument("--out", required=True, help="the RUN folder (checkpoint/, rounds.json, model/)")
    sr.add_argument("--rounds", type=int, default=3, help="total rounds of the run (default 3)")
    sr.add_argument("--config", action="append", metavar="KEY=VALUE", help="a key of [tool.flwr.app.config] (repeat)")
    sr.add_argument("--resume", action="store_true", help="continue RUN from its last checkpoint")
    sr.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds")
    sr.set_defaults(func=_cmd_server_run)
    ss = ssub.add_parser("status", help="certificate validity and every enrolled node's state")
    ss.add_argument("state_dir")
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(func=_cmd_server_status)


__all__ = ["add_deploy_parsers", "add_node_parsers"]
