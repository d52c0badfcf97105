"""``workbench node doctor NODE_DIR`` for the inference service: the checks a hospital's IT team runs before and
after starting ``workbench serve``, each with the fix when it fails. Added to the node's own checks when
``node.toml`` has a ``[service]`` table.

- service config: the ``[service]`` table reads (AE title, port, site);
- model: the RUN holds a model and its per-site calibrators (``uncertainty.json``) for the site;
- fast path: the RUN's ONNX export is current (or absent: PyTorch is used, which is slower, not wrong);
- PACS: the configured PACS answers a C-ECHO from the service's AE title (so the SR can go back);
- listener: the service is running (its status file's PID is alive) or its port is free to start it;
- studies: what waits in ``work/`` or ``quarantine/`` (a quarantined study needs a person).
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path

from federated.node_agent import Check
from workbench.errors import WorkbenchError
from workbench.service.config import NODE_FILE, ServiceConfig, read_service

ECHO_TIMEOUT_S = 10.0


def has_service(node_dir: str | Path) -> bool:
    f = Path(node_dir) / NODE_FILE
    if not f.is_file():
        return False
    text = f.read_text(encoding="utf-8", errors="replace")
    try:
        return "service" in tomllib.loads(text)
    except tomllib.TOMLDecodeError:  # broken: read_service names the error, if the table is there at all
        return "[service]" in text


def service_checks(node_dir: str | Path) -> list[Check]:
    """The service's checks (module docstring); [] when node.toml has no [service] table."""
    if not has_service(node_dir):
        return []
    try:
        cfg = read_service(node_dir)
    except WorkbenchError as exc:
        return [Check("service config", False, str(exc), "fix the [service] table (README: At the hospital)")]
    checks = [Check("service config", True, f"{cfg.ae_title} on {cfg.host}:{cfg.port}, site {cfg.site}, "
                                            f"RUN {cfg.run}")]
    checks.append(_model(cfg))
    checks.append(_fast(cfg))
    checks.append(_echo(cfg))
    checks.append(_listener(cfg))
    checks.append(_studies(cfg))
    return checks


def _model(cfg: ServiceConfig) -> Check:
    if not (cfg.run / "model").is_dir():
        return Check("service model", False, f"{cfg.run}: no model/ folder", "set [service] run to a RUN folder")
    unc = cfg.run / "uncertainty.json"
    if not unc.is_file():
        return Check("service model", False, f"{cfg.run}: not calibrated (no uncertainty.json)",
                     f"workbench calibrate {cfg.run} COHORT")
    d = json.loads(unc.read_text(encoding="utf-8"))
    if cfg.site not in d.get("sites", {}) and d.get("pooled") is None:
        return Check("service model", False, f"{cfg.run}: no calibrators for site {cfg.site} (and none pooled)",
                     f"calibrate the RUN on {cfg.site}'s data, or set [service] site")
    return Check("service model", True, f"{cfg.run}: model and calibrators for {cfg.site}")


def _fast(cfg: ServiceConfig) -> Check:
    from workbench.runtime.fast import FAST_DIR, has_fast, weights_digest

    if not cfg.fast:
        return Check("fast path", True, "off ([service] fast = false): PyTorch scores")
    if not has_fast(cfg.run):
        return Check("fast path", True, "no ONNX export: PyTorch scores (slower, same numbers)",
                     f"optional: workbench fast {cfg.run} COHORT")
    info = json.loads((cfg.run / FAST_DIR / "fast.json").read_text(encoding="utf-8"))
    if info.get("weights_sha256") != weights_digest(cfg.run):
        return Check("fast path", False, "the ONNX export was made from other weights (refused when scoring)",
                     f"workbench fast {cfg.run} COHORT")
    return Check("fast path", True, f"ONNX export current (largest difference to PyTorch "
                                    f"{max(info['max_abs_diff'].values()):.1e})")


def _echo(cfg: ServiceConfig) -> Check:
    import logging

    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    p = cfg.pacs
    ae = AE(ae_title=cfg.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = ECHO_TIMEOUT_S
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(p.host, p.port, ae_title=p.ae_title)
    where = f"{p.ae_title}@{p.host}:{p.port}"
    if not assoc.is_established:
        return Check("PACS", False, f"{where}: no association (refused, or nothing listening)",
                     f"check [service.pacs] host and port, and that the PACS knows AE title {cfg.ae_title} "
                     "at this host")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    ok = bool(status) and int(status.Status) == 0
    return Check("PACS", ok, f"{where}: C-ECHO {'answered' if ok else 'failed'}",
                 "" if ok else "the PACS refused the echo: ask its administrator")


def _listener(cfg: ServiceConfig) -> Check:
    status = cfg.root / "status.json"
    if status.is_file():
        pid = int(json.loads(status.read_text(encoding="utf-8")).get("pid", 0))
        if pid and _alive(pid):
            return Check("service", True, f"running (pid {pid}), listening on {cfg.host}:{cfg.port}")
    with socket.socket() as s:
        try:
            s.bind((cfg.host, cfg.port))
        except OSError as exc:
            return Check("service", False, f"not running, and {cfg.host}:{cfg.port} is taken ({exc.strerror})",
                         "stop what holds the port or set [service] port")
    return Check("service", True, f"not running; {cfg.host}:{cfg.port} is free (start: workbench serve "
                                  f"{cfg.node_dir})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _studies(cfg: ServiceConfig) -> Check:
    from workbench.service.inbox import folder_counts

    counts = folder_counts(cfg.root)
    q = counts["quarantine"]
    return Check("studies", True, ", ".join(f"{k} {v}" for k, v in counts.items()),
                 f"{q} quarantined: `workbench serve {cfg.node_dir} --status` lists their reasons" if q else "")


__all__ = ["has_service", "service_checks"]
