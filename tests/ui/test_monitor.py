"""The federation monitor on RUN folders written by hand: rounds done, the epsilon table, seeded runs called out."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.runtime.privacy import NOT_PRIVATE
from workbench.ui.monitor import RunMonitor


def rounds(n: int) -> dict:
    return {"rounds": [{"round": r, "evaluate": {"site_a": {"auroc": 0.5 + 0.1 * r}},
                        "nodes": [{"site": "site_a", "epsilon_total": 0.4 * r}]} for r in range(1, n + 1)]}


def test_the_monitor_follows_a_running_federation_and_shows_the_finished_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    monitor = RunMonitor(run, total_rounds=3)
    assert (monitor.progress.value, monitor.progress.max) == (0, 3)
    assert "no DP in this run" in monitor.table.value
    (run / "rounds.json").write_text(json.dumps(rounds(2)))
    monitor.refresh()
    assert (monitor.progress.value, monitor.progress.max) == (2, 3)
    assert bytes(monitor.plot.value).startswith(b"\x89PNG")
    (run / "rounds.json").write_text(json.dumps(rounds(3)))
    (run / "federation.json").write_text(json.dumps({
        "config": {"num-server-rounds": 3},
        "epsilon": {"site_a": {"run": 1.2, "lifetime": 2.5, "budget": 8.0, "secure_randomness": True},
                    "site_b": {"run": 0.5, "lifetime": 0.5, "budget": 4.0, "secure_randomness": False}}}))
    monitor.refresh()
    assert monitor.progress.value == 3
    table = monitor.table.value
    assert "<td>site_a</td><td>1.200</td><td>2.500</td><td>8</td>" in table
    assert f"<td>site_b</td><td>0.500 ({NOT_PRIVATE})</td>" in table  # seeded randomness: the epsilon is void
    # a finished RUN read afresh takes its round count from federation.json
    assert RunMonitor(run).progress.max == 3


def test_an_old_run_without_the_randomness_flag_is_shown_as_not_private(tmp_path: Path) -> None:
    (tmp_path / "federation.json").write_text(json.dumps({
        "config": {"num_server_rounds": 5}, "epsilon": {"site_a": {"run": 1.0, "lifetime": 1.0, "budget": 8}}}))
    monitor = RunMonitor(tmp_path)
    assert monitor.progress.max == 5 and monitor.progress.value == 0
    assert NOT_PRIVATE in monitor.table.value


def test_a_deployment_run_shows_what_the_nodes_released_and_the_superlinks_node_list(tmp_path: Path) -> None:
    """No federation.json (a `workbench server run` / `poc` RUN): epsilon per node is each node's last reported
    scalar; the budget stays at the node. A coordinator folder whose SuperLink is down says so, not a traceback."""
    node = {"site": "hospital_a", "epsilon_run": 0.4, "epsilon_total": 0.4, "secure_randomness": 1.0}
    later = {**node, "epsilon_run": 1.0, "epsilon_total": 2.0}
    (tmp_path / "rounds.json").write_text(json.dumps({"config": {"num-server-rounds": 4}, "rounds": [
        {"round": 1, "nodes": [node, {"node_id": 7, "error": "Node Unavailable"}]}, {"round": 2, "nodes": [later]}]}))
    from federated.deploy import nodes

    monitor = RunMonitor(tmp_path, nodes=lambda: nodes(tmp_path / "no_coordinator"))
    assert (monitor.progress.value, monitor.progress.max) == (2, 4)
    assert "<td>hospital_a</td><td>1.000</td><td>2.000</td><td>kept at the node</td>" in monitor.table.value
    assert "SuperLink not reachable" in monitor.nodes.value
