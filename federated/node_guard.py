"""The node's guards, run from the hospital's own installation, around whatever app the coordinator sends.

A Flower SuperNode runs each message's ClientApp in a fresh ``flwr-clientapp`` process, loading the app's code from
the bundle (FAB) the coordinator submitted. A guard written *inside* that app would be the coordinator's code
guarding the coordinator's code. So ``workbench node start`` puts a ``flwr-clientapp`` of its own first on the
SuperNode's PATH (``write_shim``); it runs this module, from the node's installed workbench, which runs Flower's own
``flwr-clientapp`` with two checks around the app:

- **app allowlist**: before the app is loaded, its version and bundle hash are checked against ``node.toml``
  (``[apps] allowed_versions``, ``allowed_hashes``; a hash list, when given, is the stricter and decides). An app
  not allowed is never imported; the reply is ``Error(APP_NOT_ALLOWED)``.
- **egress guard**: the app's reply may carry model arrays named ``arrays`` and the scalars of the privacy card's
  table (``federated/egress.DP_EGRESS``, read from the node's own installed copy before the app is loaded), or
  with ``[egress] policy = "plain"`` the non-DP table. Any other key replaces the reply with
  ``Error(EGRESS_REFUSED)``, naming the keys; the server counts that node's round as failed and goes on.

Every message (allowed, refused, what was sent: record keys and a digest of the arrays) lands in the node's
hash-chained ``NODE_DIR/guard_audit.jsonl`` (``workbench node audit`` checks it). Keys and digests only: no value
leaves into the audit beyond what the reply itself carried.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

GUARD_AUDIT = "guard_audit.jsonl"
APP_NOT_ALLOWED = 1003  # Flower error codes of this project's refusals (NODE_ERROR 1001 is the app's own)
EGRESS_REFUSED = 1002
SHIM_DIR = "bin"


def write_shim(node_dir: str | Path) -> Path:
    """``NODE_DIR/bin/flwr-clientapp``: runs this module with this Python for the node in ``node_dir``. Put its
    folder first on the SuperNode's PATH and every ClientApp the SuperNode starts passes the guards."""
    node = Path(node_dir).resolve()
    shim = node / SHIM_DIR / "flwr-clientapp"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(f"#!/bin/sh\nexec '{sys.executable}' -m federated.node_guard --node-dir '{node}' \"$@\"\n",
                    encoding="utf-8")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return shim.parent


def node_policy(node_dir: Path) -> dict[str, Any]:
    """The guard's view of ``node.toml``: allowed versions and hashes, the egress policy."""
    d = tomllib.loads((node_dir / "node.toml").read_text(encoding="utf-8"))
    apps = d.get("apps", {})
    return {"name": str(d.get("node", {}).get("name", node_dir.name)),
            "allowed_versions": [str(v) for v in apps.get("allowed_versions", [])],
            "allowed_hashes": [str(v) for v in apps.get("allowed_hashes", [])],
            "egress": str(d.get("egress", {}).get("policy", "privacy-card"))}


def app_allowed(policy: dict[str, Any], fab_version: str, fab_hash: str) -> str | None:
    """None when the node runs this app; else why not (the hash list decides when it is given)."""
    if policy["allowed_hashes"]:
        if fab_hash not in policy["allowed_hashes"]:
            return f"app bundle {fab_hash[:12]}... is not in this node's allowed_hashes"
        return None
    if policy["allowed_versions"] and fab_version not in policy["allowed_versions"]:
        return (f"app version {fab_version!r} is not in this node's allowed_versions "
                f"({', '.join(policy['allowed_versions'])})")
    return None


def _arrays_digest(content: Any) -> str:
    h = hashlib.sha256()
    for name, rec in sorted(content.array_records.items()):
        for key, arr in sorted(rec.items()):
            h.update(f"{name}/{key}".encode())
            h.update(arr.data)
    return h.hexdigest()


def make_loader(node_dir: Path, original: Callable[..., Callable[..., Any]]) -> Callable[..., Callable[..., Any]]:
    """A replacement for Flower's ``get_load_client_app_fn`` that returns guarded apps (see the module docstring)."""
    # everything the guard needs comes from the node's installation, taken before the app's code is imported
    from flwr.app import Error, Message

    from federated import audit
    from federated.egress import ARRAYS, DP_EGRESS, PLAIN_EGRESS, reply_keys

    policy = node_policy(node_dir)
    allowed_keys = set(PLAIN_EGRESS if policy["egress"] == "plain" else DP_EGRESS)
    log = node_dir / GUARD_AUDIT

    def record(body: dict[str, Any]) -> None:
        audit.append(log, {"site": policy["name"], "pid": os.getpid(), **body})

    def get_loader(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        load = original(*args, **kwargs)

        def load_guarded(fab_id: str, fab_version: str, fab_hash: str) -> Callable[..., Any]:
            app = {"fab_id": fab_id, "fab_version": fab_version, "fab_hash": fab_hash}
            why_not = app_allowed(policy, fab_version, fab_hash)
            if why_not:
                def refuse(message: Any, context: Any) -> Any:
                    record({**app, "type": message.metadata.message_type, "refused": "app not allowed",
                            "reason": why_not})
                    return Message(Error(APP_NOT_ALLOWED, f"node {policy['name']}: {why_not}"), reply_to=message)
                return refuse
            # the app's own package, not the node's copy imported above, is what runs
            for name in [m for m in sys.modules if m == "federated" or m.startswith("federated.")]:
                del sys.modules[name]
            inner = load(fab_id, fab_version, fab_hash)

            def guarded(message: Any, context: Any) -> Any:
                reply = inner(message=message, context=context)
                kind = message.metadata.message_type
                if reply.has_error():
                    record({**app, "type": kind, "error": int(reply.error.code)})
                    return reply
                keys = reply_keys(reply.content)
                bad = sorted({k for k in keys["metrics"] + keys["configs"] if k not in allowed_keys}
                             | {k for k in keys["arrays"] if k != ARRAYS})
                if bad:
                    reason = (f"node {policy['name']}: egress guard ({policy['egress']}) refused a reply carrying "
                              f"{bad}")
                    record({**app, "type": kind, "refused": "egress", "keys": bad})
                    return Message(Error(EGRESS_REFUSED, reason), reply_to=message)
                record({**app, "type": kind, "sent": {k: sorted(v) for k, v in keys.items() if k != "arrays"},
                        "arrays": _arrays_digest(reply.content) if keys["arrays"] else None})
                return reply

            return guarded

        return load_guarded

    return get_loader


def main(argv: list[str] | None = None) -> None:
    """``python -m federated.node_guard --node-dir NODE_DIR <flwr-clientapp's own arguments>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--node-dir":
        raise SystemExit("usage: python -m federated.node_guard --node-dir NODE_DIR [flwr-clientapp arguments]")
    node_dir = Path(args[1])
    import flwr.supernode.runtime.run_clientapp as runner
    from flwr.supernode.cli.flwr_clientapp import flwr_clientapp

    runner.get_load_client_app_fn = make_loader(node_dir, runner.get_load_client_app_fn)  # type: ignore[assignment]
    sys.argv = ["flwr-clientapp", *args[2:]]
    flwr_clientapp()


if __name__ == "__main__":
    main()
