"""What a SIGKILLed service leaves, and what the next start makes of it; both found by ``bench reliability
--part service_faults``:

- ``atomic_write``'s temporaries (a ``.service_audit.<pid>.tmp.jsonl`` beside the audit log): the next start
  removes every one of them, wherever the service writes: its own folder (audit log, status.json), inside the
  studies still in incoming/ and work/, beside the study folders, and in the FHIR outbox;
- a study cut short while it arrived (its instances older than ``quiet_s`` by the time the service is back): it
  was taken at once and quarantined for its missing slices (or, cut after its last slice, scored on part of
  the series). Its quiet clock now starts again when the listener is up, so the PACS's push again completes it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from workbench.service.config import read_service, service_toml
from workbench.service.inbox import Inbox
from workbench.service.pacs_sandbox import free_port
from workbench.service.serve import Service

DEAD = 999_999  # a writer's PID that is gone


def _leftovers(root: Path, outbox: Path) -> list[Path]:
    made = [root / f".service_audit.{DEAD}.tmp.jsonl", root / f".status.{DEAD}.tmp.json",
            root / "incoming" / "study-000000000001" / "dicom" / f".inst-0123456789ab.{DEAD}.tmp.dcm",
            root / "work" / "study-000000000002" / f".state.{DEAD}.tmp.json",
            root / "work" / "study-000000000002" / f".reports.{DEAD}.tmp" / "report.json",
            root / "work" / f".study-000000000003.{DEAD}.old" / "state.json",
            outbox / f".study-000000000002.{DEAD}.tmp.json"]
    for f in made:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("torn")
    return made


def test_the_inbox_sweeps_the_temporaries_a_killed_service_left_inside_the_studies_in_hand(tmp_path: Path) -> None:
    root, outbox = tmp_path / "service", tmp_path / "service" / "outbox"
    made = _leftovers(root, outbox)
    kept = root / "work" / "study-000000000002" / "dicom" / "inst-0123456789ab.dcm"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"whole")
    gone = Inbox(root).sweep(outbox)
    assert not any(f.exists() for f in made), [f for f in made if f.exists()]
    assert kept.read_bytes() == b"whole" and (root / "incoming" / "study-000000000001" / "dicom").is_dir()
    assert len(gone) >= 6


def test_the_service_sweeps_its_own_folder_and_the_outbox_at_start(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)  # start() only checks that it is a RUN; nothing is scored here
    node = tmp_path / "node"
    node.mkdir()
    (node / "node.toml").write_text('[node]\nname = "hospital_a"\n\n' + service_toml(
        run, site="hospital_a", port=free_port(), pacs_port=free_port(), quiet_s=600.0))  # slow machines: not a race
    cfg = read_service(node)
    made = [f for f in _leftovers(cfg.root, cfg.fhir_outbox) if "work" not in f.parts]  # work/ would be scored
    part = cfg.root / "incoming" / "study-000000000004" / "dicom" / "inst-0123456789ab.dcm"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"part of a study")
    old = time.time() - 10 * cfg.quiet_s
    os.utime(part, (old, old))
    svc = Service(cfg, echo=lambda _line: None)
    assert svc.inbox.quiet(cfg.quiet_s) == ["study-000000000004"]  # what a service saw before: taken at once
    svc.start()
    try:
        assert not any(f.exists() for f in made), [f for f in made if f.exists()]
        assert svc.inbox.quiet(cfg.quiet_s) == []  # the part waits quiet_s for the PACS to push the study again
        svc.inbox.last_seen["study-000000000004"] -= cfg.quiet_s
        assert "study-000000000004" in svc.inbox.quiet(cfg.quiet_s)  # and is taken when nothing came
    finally:
        svc.close()
