"""The node guard's policy, read from a real node.toml: versions, or bundle hashes when given (they decide);
and its shim, which a SuperNode finds first on PATH (the loopback test in test_deploy.py runs it for real)."""

from __future__ import annotations

import os
from pathlib import Path

from federated.node_agent import NodeConfig, init_node, write_node_toml
from federated.node_guard import app_allowed, node_policy, write_shim


def test_versions_then_hashes_decide_which_app_bundles_a_node_runs(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    c, _ = init_node(tmp_path / "node", tmp_path / "site", "hospital_a")
    policy = node_policy(c.node_dir)
    assert policy["name"] == "hospital_a" and policy["egress"] == "privacy-card"
    assert app_allowed(policy, c.allowed_versions[0], "ab" * 32) is None
    refused = app_allowed(policy, "9.9.9", "ab" * 32)
    assert refused and "'9.9.9'" in refused and "allowed_versions" in refused
    write_node_toml(NodeConfig(**{**c.__dict__, "allowed_hashes": ("cd" * 32,)}))
    pinned = node_policy(c.node_dir)
    assert app_allowed(pinned, c.allowed_versions[0], "cd" * 32) is None
    # with hashes pinned, an allowed version is not enough: another bundle claiming it is refused
    assert "allowed_hashes" in (app_allowed(pinned, c.allowed_versions[0], "ab" * 32) or "")


def test_the_shim_runs_the_guard_with_this_python_for_this_node(tmp_path: Path) -> None:
    folder = write_shim(tmp_path / "node")
    shim = folder / "flwr-clientapp"
    text = shim.read_text()
    assert os.access(shim, os.X_OK) and "-m federated.node_guard --node-dir" in text and str(tmp_path / "node") in text
