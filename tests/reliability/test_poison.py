"""Poisoning (workbench.bench.reliability.poison): a real Flower federation under the robust strategy
(``normbounded``) with one node turned attacker by a client mod; the server's screen flags that node in
rounds.json and in its hash-chained audit log, every round, and the strategy leaves its update out."""

from __future__ import annotations

import json
from pathlib import Path

from federated import audit
from federated.config import FedConfig
from federated.federate import run_federated
from workbench.bench.reliability.poison import poison_mod
from workbench.models.shipped import shipped


def test_a_scaled_attacker_is_flagged_every_round_in_the_servers_audit_log(tiny_cohort: Path, tmp_path: Path) -> None:
    fed = FedConfig(cohort=str(tiny_cohort), text_encoder=str(shipped("note_reader")),
                    ct_encoder=str(shipped("ct_reader")), init_model=str(shipped("fusion_init")),
                    num_server_rounds=2, fraction_evaluate=0.0, state_dir=str(tmp_path / "nodes"), progress=False,
                    strategy="normbounded")
    run_federated(fed, tmp_path / "run", calibrate=False,
                  client_mods=[poison_mod(tiny_cohort, "hospital_c", "scale", boost=10.0)])
    rounds = json.loads((tmp_path / "run" / "rounds.json").read_text())["rounds"]
    assert len(rounds) == 2
    for r in rounds:
        by_site = {n["site"]: n for n in r["nodes"]}
        assert by_site["hospital_c"]["anomalous"] and "norm" in by_site["hospital_c"]["why"]
        assert by_site["hospital_c"]["norm_ratio"] > 5  # ten times an honest update
    log = tmp_path / "run" / "server_audit.jsonl"
    assert audit.verify(log) == 2
    bodies = [json.loads(line)["body"] for line in log.read_text().splitlines()]
    assert all("hospital_c" in b["anomalous"] and set(b["update_norms"]) == {"hospital_a", "hospital_b", "hospital_c"}
               for b in bodies)
