"""A hospital's node agent: its configuration (``node.toml``), its SuperNode, and a doctor that checks everything.

``workbench node init NODE_DIR --site-dir DIR --name SITE`` writes ``node.toml`` and the node's key pair;
``workbench node start NODE_DIR --superlink HOST:PORT --ca CA`` runs flower-supernode with them (TLS against the
coordinator's CA, signed with the enrolled key, the site folder as node config); ``workbench node doctor NODE_DIR``
checks, on one screen, what hospital deployments fail on: the SuperLink reachable, its TLS certificate chained to
the CA the node trusts and days to expiry, the node's key enrolled, the data readable and ingested, the privacy
budget left, and this workbench's version allowed. Each failed check names its fix.

``node.toml`` (TOML; paths may be relative to NODE_DIR)::

    [node]
    name = "hospital_a"
    site_dir = "/data/hospital_a"          # the site's cohort folder (manifest.csv, dicom/, notes)
    private_key = "node.key"
    superlink = "coordinator.example:9093" # set by `node start --superlink` (remembered)
    ca = "ca.crt"

    [privacy]
    epsilon_budget = 8.0                   # lifetime epsilon this node may spend (the ledger refuses beyond it)

    [apps]
    allowed_versions = ["0.1.0"]           # app versions this node agrees to run
    allowed_hashes = []                    # or exact app bundles (sha256, `flwr` shows it): these then decide

    [egress]
    policy = "privacy-card"                # a reply may carry only model arrays and the privacy card's scalars

The allowlist and the egress policy are enforced by ``federated.node_guard``, which ``node start`` puts around
every ClientApp the SuperNode runs (from this installation, not from the coordinator's app bundle).
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.atomic import write_text
from workbench.errors import WorkbenchError

NODE_FILE = "node.toml"
ACTIVATION_WAIT_S = 30.0


@dataclass(frozen=True)
class NodeConfig:
    node_dir: Path
    name: str
    site_dir: Path
    private_key: Path
    superlink: str | None = None
    ca: Path | None = None
    epsilon_budget: float = 8.0
    allowed_versions: tuple[str, ...] = ()
    allowed_hashes: tuple[str, ...] = ()  # app bundle (FAB) sha256 digests; when given they decide, not versions
    egress_policy: str = "privacy-card"

    def node_config_arg(self) -> str:
        """Flower's --node-config (TOML syntax: the paths quoted, or Flower refuses them). The node's state (ledger,
        audit log, local metrics) is kept under its own folder: ``NODE_DIR/<site folder name>/``."""
        return f"site-dir='{self.site_dir}' site-name='{self.name}' state-dir='{self.node_dir.resolve()}'"


def _q(s: object) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_node_toml(c: NodeConfig) -> Path:
    lines = ["[node]", f"name = {_q(c.name)}", f"site_dir = {_q(c.site_dir)}", f"private_key = {_q(c.private_key)}"]
    if c.superlink:
        lines.append(f"superlink = {_q(c.superlink)}")
    if c.ca:
        lines.append(f"ca = {_q(c.ca)}")
    lines += ["", "[privacy]", f"epsilon_budget = {float(c.epsilon_budget)}", "", "[apps]",
              f"allowed_versions = [{', '.join(_q(v) for v in c.allowed_versions)}]",
              f"allowed_hashes = [{', '.join(_q(v) for v in c.allowed_hashes)}]", "", "[egress]",
              f"policy = {_q(c.egress_policy)}", ""]
    path = c.node_dir / NODE_FILE
    write_text(path, "\n".join(lines))
    return path


def read_node(node_dir: str | Path) -> NodeConfig:
    """``node.toml`` of ``node_dir``; a clear error naming the file and the key when it is missing or wrong."""
    node = Path(node_dir)
    path = node / NODE_FILE
    if not path.is_file():
        raise WorkbenchError(f"{node}: no {NODE_FILE}; run `workbench node init {node} --site-dir DIR --name SITE`")
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
        n = d["node"]

        def here(p: str | None) -> Path | None:
            return None if p is None else (Path(p) if Path(p).is_absolute() else node / p)

        return NodeConfig(node_dir=node, name=str(n["name"]), site_dir=Path(n["site_dir"]),
                          private_key=here(n.get("private_key", "node.key")),  # type: ignore[arg-type]
                          superlink=n.get("superlink"), ca=here(n.get("ca")),
                          epsilon_budget=float(d.get("privacy", {}).get("epsilon_budget", 8.0)),
                          allowed_versions=tuple(d.get("apps", {}).get("allowed_versions", [])),
                          allowed_hashes=tuple(d.get("apps", {}).get("allowed_hashes", [])),
                          egress_policy=str(d.get("egress", {}).get("policy", "privacy-card")))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise WorkbenchError(f"{path}: not a valid node file ({type(exc).__name__}: {exc})") from None


def init_node(node_dir: str | Path, site_dir: str | Path, name: str, *, epsilon_budget: float = 8.0,
              force: bool = False) -> tuple[NodeConfig, str]:
    """``node.toml`` and the node's key pair; returns the config and the public key line for the coordinator."""
    from federated.pki import node_key
    from workbench import __version__

    node = Path(node_dir)
    if (node / NODE_FILE).exists() and not force:
        raise WorkbenchError(f"{node}: already a node ({NODE_FILE}); use --force to write it again")
    if not Path(site_dir).is_dir():
        raise WorkbenchError(f"--site-dir {site_dir}: no such folder (the site's data: manifest.csv, dicom/, notes)")
    key = node_key(node, name, force=force)
    c = NodeConfig(node_dir=node, name=name, site_dir=Path(site_dir).resolve(), private_key=key.private_key,
                   epsilon_budget=epsilon_budget, allowed_versions=(__version__,))
    write_node_toml(c)
    return c, key.public_line


# --- doctor ----------------------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    ok: bool | None  # None: not checked (an earlier failure makes it meaningless)
    detail: str
    fix: str = ""


@dataclass
class Diagnosis:
    node: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "ok": self.ok, "checks": [c.__dict__ for c in self.checks]}

    def text(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}
        lines = [f"node {self.node}: {'all checks passed' if self.ok else 'needs attention'}"]
        for c in self.checks:
            lines.append(f"  [{mark[c.ok]}] {c.name}: {c.detail}" + (f"\n         fix: {c.fix}" if c.fix else ""))
        return "\n".join(lines)


def _split(superlink: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", superlink.strip())
    if not m:
        raise WorkbenchError(f"superlink {superlink!r}: expected HOST:PORT")
    return m.group(1), int(m.group(2))


def _tls_check(host: str, port: int, ca: Path) -> Check:
    from cryptography import x509

    from federated.pki import tls_peer_certificate

    try:
        der = tls_peer_certificate(host, port, ca)
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or str(exc)
        fix = (f"the SuperLink's certificate does not name {host}: ask the coordinator to re-issue it with "
               f"`workbench pki init DIR --host {host} --force`" if "mismatch" in why.lower() else
               "the node trusts a different CA than the one that signed the SuperLink's certificate: get ca.crt "
               "from the coordinator again and set it with `workbench node start NODE_DIR --ca ca.crt`")
        return Check("TLS certificate", False, f"refused: {why}", fix)
    except (OSError, ssl.SSLError) as exc:
        return Check("TLS certificate", False, f"handshake failed: {exc}", "check the port and that it serves TLS")
    cert = x509.load_der_x509_certificate(der)
    days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    ok = days >= 14
    return Check("TLS certificate", ok, f"chained to {ca.name}, valid for {host}, {days} days left",
                 "" if ok else "ask the coordinator to renew the SuperLink certificate before it expires")


def _enrolled_check(c: NodeConfig, superlink: str, ca: Path) -> Check:
    """Start the SuperNode briefly: an enrolled key activates (it logs its node ID), an unknown one is refused."""
    from federated.deploy import start_supernode, stop

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = c.node_dir / "doctor_supernode.log"
    log.unlink(missing_ok=True)
    sn = start_supernode(log, superlink, ca, c.private_key, c.node_config_arg(), port, max_retries=1)
    try:
        deadline = time.monotonic() + ACTIVATION_WAIT_S
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "SuperNode ID" in text:
                return Check("node key enrolled", True, f"{c.private_key.name} activated at the SuperLink")
            if "2004" in text or "Failed to activate" in text:
                return Check("node key enrolled", False, "the SuperLink refused this node's key (not enrolled)",
                             f"send {c.private_key.name}.pub to the coordinator for `workbench server enroll`")
            if sn.proc is not None and sn.proc.poll() is not None:
                break
            time.sleep(0.5)
        return Check("node key enrolled", False, f"no answer within {ACTIVATION_WAIT_S:.0f} s (see {log})",
                     "check that the SuperLink is running and reachable")
    finally:
        stop(sn.pid)


def doctor(node_dir: str | Path, superlink: str | None = None, ca: str | Path | None = None) -> Diagnosis:
    """Every check of the module docstring, in order; later checks are skipped when an earlier one makes them
    meaningless (no TLS: no enrolment check)."""
    from workbench import __version__

    c = read_node(node_dir)
    d = Diagnosis(c.name)
    link = superlink or c.superlink
    trust = Path(ca) if ca else c.ca
    # data
    manifest = c.site_dir / "manifest.csv"
    if manifest.is_file():
        rows = max(0, len(manifest.read_text(encoding="utf-8", errors="replace").splitlines()) - 1)
        d.checks.append(Check("site data", rows > 0, f"{manifest}: {rows} cases",
                              "" if rows else "the manifest lists no case"))
    else:
        d.checks.append(Check("site data", False, f"{manifest} not found", f"set site_dir in {NODE_FILE}"))
    # privacy budget
    try:
        from federated.ledger import read_ledger

        found = sorted(c.node_dir.glob("**/privacy_ledger.json"))
        led = read_ledger(found[0] if found else c.node_dir)
        spent = led.epsilon()
        left = c.epsilon_budget - spent
        d.checks.append(Check("privacy budget", left > 0, f"epsilon {spent:.2f} of {c.epsilon_budget:g} spent",
                              "" if left > 0 else "the node's budget is spent: it must refuse further training"))
    except WorkbenchError:
        d.checks.append(Check("privacy budget", True, f"nothing spent yet (budget epsilon {c.epsilon_budget:g})"))
    # app version
    allowed = bool(c.allowed_hashes) or not c.allowed_versions or __version__ in c.allowed_versions
    pinned = f"; pinned to {len(c.allowed_hashes)} app bundle hash(es), which decide" if c.allowed_hashes else ""
    d.checks.append(Check("app version", allowed, f"workbench {__version__}; allowed: "
                          f"{', '.join(c.allowed_versions) or 'any'}{pinned}",
                          "" if allowed else f"add {__version__} to [apps] allowed_versions only if you accept it"))
    # network
    if not link or trust is None:
        d.checks.append(Check("SuperLink reachable", False, "no SuperLink address or CA configured",
                              "run `workbench node start NODE_DIR --superlink HOST:PORT --ca ca.crt` once"))
        return d
    host, port = _split(link)
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
        d.checks.append(Check("SuperLink reachable", True, f"{host}:{port} accepts connections"))
    except OSError as exc:
        d.checks.append(Check("SuperLink reachable", False, f"{host}:{port}: {exc}",
                              "check the address, the coordinator's firewall and that its SuperLink runs"))
        return d
    tls = _tls_check(host, port, trust)
    d.checks.append(tls)
    if tls.ok is False and "refused" in tls.detail:
        d.checks.append(Check("node key enrolled", None, "not checked: TLS failed first"))
        return d
    d.checks.append(_enrolled_check(c, link, trust))
    return d


def supernode_args(c: NodeConfig, superlink: str, ca: Path, port: int = 9094) -> list[str]:
    from federated.deploy import supernode_command

    return supernode_command(superlink, ca, c.private_key, c.node_config_arg(), port)


def run_supernode(c: NodeConfig, superlink: str, ca: Path, port: int = 9094) -> int:
    """The SuperNode in the foreground (a service): returns its exit code; Ctrl-C/SIGTERM stop it with children."""
    import signal

    from federated.deploy import guarded_env, stop

    proc = subprocess.Popen(supernode_args(c, superlink, ca, port), env=guarded_env(c.node_dir))

    def _term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop(proc.pid)
        return 0


__all__ = ["Check", "Diagnosis", "NodeConfig", "doctor", "init_node", "read_node", "run_supernode",
           "write_node_toml"]
