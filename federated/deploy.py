"""The coordinator's SuperLink and a hospital's SuperNode as real processes: TLS, node authentication, enrolment.

Flower's deployment engine (``flower-superlink``, ``flower-supernode``, ``flwr``) does the networking; this module
puts the project's choices around it so that a hospital's IT team never assembles a command line by hand:

- The SuperLink always runs with TLS (the coordinator's ``pki`` folder), ``--enable-supernode-auth`` (only
  enrolled node keys may connect), its state in ``STATE_DIR/superlink.db`` and runtime dependency installation
  off (nothing is fetched from the internet at run time). Fleet, Control and Runtime APIs share one port.
- ``flwr`` commands reach it through a **named connection** in a Flower home kept under ``STATE_DIR/flwr``
  (``FLWR_HOME``): Flower's default ``local`` connection silently starts a simulation SuperLink, which must never
  happen on a coordinator.
- Processes are started in their own session and stopped **by PID** with their children (Flower's SuperExec is a
  detached child; stopping only the SuperLink would leave it running), and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.atomic import write_text
from workbench.errors import WorkbenchError

CONNECTION = "workbench"  # the flwr connection name every coordinator command uses
PKI_DIR = "pki"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # bind address; a coordinator serving hospitals binds its LAN/VPN address
    port: int = 9093
    start_timeout_s: float = 60.0
    command_timeout_s: float = 60.0


def _bin(name: str) -> str:
    """A Flower executable from this Python's environment (the venv), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise WorkbenchError(f"{name} not found: install the project (`make demo` or `pip install -e .`)")
    return found


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Flower starts flower-superexec by name: the venv's bin must be on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return {**env, **(extra or {})}


def _pki(state_dir: Path) -> dict[str, Path]:
    pki = state_dir / PKI_DIR
    files = {"ca": pki / "ca.crt", "cert": pki / "superlink.crt", "key": pki / "superlink.key"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise WorkbenchError(f"{state_dir}: missing {', '.join(missing)}; run `workbench pki init "
                             f"{state_dir / PKI_DIR} --host YOUR.HOST` first")
    return files


def superlink_command(state_dir: str | Path, config: ServerConfig = ServerConfig()) -> list[str]:
    """The flower-superlink command line this project runs (module docstring)."""
    state = Path(state_dir)
    pki = _pki(state)
    return [_bin("flower-superlink"), "--ssl-ca-certfile", str(pki["ca"]), "--ssl-certfile", str(pki["cert"]),
            "--ssl-keyfile", str(pki["key"]), "--enable-supernode-auth", "--database", str(state / "superlink.db"),
            "--disable-runtime-dependency-installation", "--host", config.host, "--port", str(config.port)]


def write_connection(state_dir: str | Path, config: ServerConfig = ServerConfig()) -> Path:
    """``STATE_DIR/flwr/config.toml`` with the one named connection to this SuperLink (TLS, the CA)."""
    state = Path(state_dir)
    pki = _pki(state)
    address = f"{'127.0.0.1' if config.host in ('0.0.0.0', '::') else config.host}:{config.port}"
    home = state / "flwr"
    home.mkdir(parents=True, exist_ok=True)
    write_text(home / "config.toml", f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                     f'address = "{address}"\nroot-certificates = "{pki["ca"]}"\n')
    write_text(state / "server.json", json.dumps(asdict(config), indent=1) + "\n")
    return home / "config.toml"


def wait_for_tls(host: str, port: int, ca: Path, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Until a TLS handshake with ``host:port`` verifies against ``ca`` (bounded; a dead process ends it early)."""
    from federated.pki import tls_peer_certificate

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise WorkbenchError(f"the process serving {host}:{port} exited with code {proc.returncode} before it "
                                 "answered; see its log")
        try:
            tls_peer_certificate(host, port, ca, timeout_s=2.0)
            return
        except (OSError, ssl.SSLError) as exc:
            last = exc
            time.sleep(0.5)
    raise WorkbenchError(f"{host}:{port} did not answer a verified TLS handshake within {timeout_s:.0f} s ({last})")


@dataclass
class Started:
    """A process this module started: stop it with ``stop`` (by PID, its children too)."""

    pid: int
    log: Path
    proc: subprocess.Popen | None = None


def start_superlink(state_dir: str | Path, config: ServerConfig = ServerConfig()) -> Started:
    """Start the SuperLink in the background, wait (bounded) until it serves TLS, record its PID."""
    state = Path(state_dir)
    cmd = superlink_command(state, config)
    write_connection(state, config)
    log = state / "superlink.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    write_text(state / "superlink.pid", f"{proc.pid}\n")
    try:
        host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        wait_for_tls(host, config.port, _pki(state)["ca"], config.start_timeout_s, proc)
    except WorkbenchError:
        stop(proc.pid)
        raise
    return Started(proc.pid, log, proc)


def stop(pid: int, timeout_s: float = 15.0) -> None:
    """Stop the process ``pid`` and every descendant it started (SIGTERM, then SIGKILL after ``timeout_s``)."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    family = [*root.children(recursive=True), root]
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def _flwr(state_dir: Path, args: list[str], timeout_s: float) -> dict[str, Any]:
    """A ``flwr ... --format json`` command against this state's named connection; its JSON, or a clear error."""
    env = _env({"FLWR_HOME": str(state_dir / "flwr")})
    try:
        done = subprocess.run([_bin("flwr"), *args, CONNECTION, "--format", "json"], capture_output=True, text=True,
                              env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise WorkbenchError(f"flwr {' '.join(args)}: no answer within {timeout_s:.0f} s (is the SuperLink running? "
                             f"`workbench server status {state_dir}`)") from None
    text = done.stdout.strip()
    start = text.find("{")
    try:
        out = json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        out = {}
    if done.returncode != 0 or not out.get("success", True):
        last_line = ((done.stderr or text).strip().splitlines() or ["no output"])[-1]
        raise WorkbenchError(f"flwr {' '.join(args)} failed: {out.get('error-message') or last_line}")
    return out


def enroll(state_dir: str | Path, public_key: str | Path, name: str, config: ServerConfig = ServerConfig()) -> dict:
    """Enrol a node's public key (``workbench pki node`` wrote it) so its SuperNode may connect."""
    key = Path(public_key)
    if not key.is_file():
        raise WorkbenchError(f"{key}: no such public key file (the node's node.key.pub)")
    if not key.read_text(encoding="utf-8", errors="replace").startswith("ecdsa-sha2-nistp256 "):
        raise WorkbenchError(f"{key}: not an ECDSA P-256 OpenSSH public key (Flower refuses other kinds; make it "
                             "with `workbench pki node`)")
    return _flwr(Path(state_dir), ["supernode", "register", str(key), "--name", name], config.command_timeout_s)


def nodes(state_dir: str | Path, config: ServerConfig = ServerConfig()) -> list[dict[str, Any]]:
    """The enrolled nodes and their status (registered, online, offline) as Flower reports them."""
    out = _flwr(Path(state_dir), ["supernode", "list"], config.command_timeout_s)
    return list(out.get("nodes", []))


def runs(state_dir: str | Path, config: ServerConfig = ServerConfig()) -> list[dict[str, Any]]:
    """The SuperLink's runs and their status (pending, starting, running, finished:...) as ``flwr ls`` reports
    them: what says a run is over, not the ``flwr run --stream`` log stream, which can end first under load."""
    out = _flwr(Path(state_dir), ["ls"], config.command_timeout_s)
    return list(out.get("runs", []))


def supernode_command(superlink: str, ca: str | Path, private_key: str | Path, node_config: str,
                      port: int) -> list[str]:
    """A hospital's SuperNode: TLS against the coordinator's CA, signed with the node's enrolled key."""
    return [_bin("flower-supernode"), "--superlink", superlink, "--root-certificates", str(ca),
            "--auth-supernode-private-key", str(private_key), "--node-config", node_config,
            "--host", "127.0.0.1", "--port", str(port)]


def guarded_env(node_dir: str | Path | None) -> dict[str, str]:
    """The SuperNode's environment: with a node folder, its guard (``federated.node_guard``) first on PATH, so
    every ClientApp the SuperNode starts runs inside the node's app allowlist and egress guard."""
    env = _env()
    if node_dir is not None:
        from federated.node_guard import write_shim

        env["PATH"] = f"{write_shim(node_dir)}{os.pathsep}{env['PATH']}"
    return env


def start_supernode(log: str | Path, superlink: str, ca: str | Path, private_key: str | Path, node_config: str,
                    port: int, max_retries: int | None = None, node_dir: str | Path | None = None) -> Started:
    """A SuperNode in the background (its own session; ``stop`` it by PID); ``node_dir``: guard it (see
    ``guarded_env``)."""
    cmd = supernode_command(superlink, ca, private_key, node_config, port)
    if max_retries is not None:
        cmd += ["--max-retries", str(max_retries)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=guarded_env(node_dir),
                                start_new_session=True)
    return Started(proc.pid, Path(log), proc)




def app_dir() -> Path:
    """The Flower app's project folder (``pyproject.toml`` with ``[tool.flwr.app]``): this source tree."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise WorkbenchError(f"{root}: no pyproject.toml; `workbench server run` needs the project's source tree")
    return root


def _toml_value(value: str) -> str:
    """A --run-config value: numbers and booleans as they are, anything else quoted."""
    v = value.strip()
    if v.lower() in ("true", "false"):
        return v.lower()
    try:
        float(v)
        return v
    except ValueError:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_config(out: Path, rounds: int, extra: dict[str, str] | None = None, resume: bool = False) -> str:
    items = {"num-server-rounds": str(rounds), "out-dir": str(out), "progress": "false", **(extra or {})}
    if resume:
        items["resume-from"] = str(out)
    return " ".join(f"{k}={_toml_value(v)}" for k, v in items.items())


def submit_command(state_dir: str | Path, out: str | Path, rounds: int, extra: dict[str, str] | None = None,
                   resume: bool = False, app: str | Path | None = None) -> list[str]:
    """``flwr run`` of this project's app (or the Flower app folder ``app``) on this SuperLink's named connection
    (never the default ``local``)."""
    out = Path(out).resolve()
    if resume and not (out / "checkpoint" / "global.safetensors").is_file():
        raise WorkbenchError(f"--resume: {out} has no checkpoint (no round completed); start it without --resume")
    return [_bin("flwr"), "run", str(app or app_dir()), CONNECTION, "--run-config", run_config(out, rounds, extra, resume),
            "--stream"]


def submit(state_dir: str | Path, out: str | Path, rounds: int, extra: dict[str, str] | None = None,
           resume: bool = False, log: Path | None = None, app: str | Path | None = None) -> subprocess.Popen:
    """Start the run (``submit_command``) in the background, its output to ``log``; the caller waits (bounded)."""
    state = Path(state_dir)
    Path(out).mkdir(parents=True, exist_ok=True)
    log = log or Path(out) / "submit.log"
    with open(log, "ab") as f:
        return subprocess.Popen(submit_command(state, out, rounds, extra, resume, app), stdout=f,
                                stderr=subprocess.STDOUT, env=_env({"FLWR_HOME": str(state / "flwr")}),
                                start_new_session=True)


__all__ = ["CONNECTION", "ServerConfig", "Started", "app_dir", "enroll", "guarded_env", "nodes", "runs", "run_config", "start_superlink",
           "start_supernode", "stop", "submit", "submit_command", "superlink_command", "supernode_command",
           "wait_for_tls", "write_connection"]
