"""Reliability part ``service_faults``: a burst of studies from a real PACS while the node service is killed
(SIGKILL, by its PID) and restarted twice; studies lost, sent twice or left half-written must all be 0.

The set-up is ``bench serve``'s (its cached RUN, its cohort of synthetic studies, Orthanc on loopback): ``N``
studies (30; quick 6) are uploaded with their radiologist's marks and notes, ``workbench serve`` runs as a child
process, and two sender threads have Orthanc push the studies one per request, the way a PACS routes each study
as it is complete. A push that fails (the service was killed under it, or is still starting) is pushed again a
second later, as a PACS's routing retries, within a bounded time. The service is killed:

1. first while a study is being scored (in ``work/``, state ``received``) and others are still arriving;
2. then, a third of the way through, preferably while a study is being delivered (state ``scored`` or later:
   the SR written, maybe in the PACS, not yet recorded as sent), else whenever a study is in ``work/``;

and restarted at once each time. Once every push was taken and every study has ended (bounded wait), the
service is stopped and the figures are counted from the node's folders and from Orthanc (``tally``).

A failed push goes to the back of the senders' queue, so a study cut by a kill may come again well after the
restarted service's ``quiet_s``: its part is then taken and quarantined for its missing slices while the whole
study, pushed again, is scored (``quarantined_copies``); ``scored_on_part`` counts the worse case, a part scored.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.bench.reliability.service_faults_tally import tally
from workbench.errors import WorkbenchError

STUDIES, STUDIES_QUICK = 30, 6
KILLS = 2
STEPS = 16  # Integrated Gradients steps of each report: half the service's default, the burst is the point
QUIET_S = 3.0
SENDERS = 2
KILL_AIM_S = 30.0  # how long a kill waits for its preferred moment before it takes any study in work/


def run(*, quick: bool, work: Path, progress: bool) -> dict[str, Any]:
    """The part's figures (module docstring), on ``bench serve``'s cached RUN and studies cohort."""
    from workbench.bench.serve_bench import ct_cases, node_run, studies_cohort
    from workbench.service.pacs_sandbox import available

    why = available()
    if why:
        raise WorkbenchError(f"reliability service_faults needs a PACS to send studies from: {why}")
    n = STUDIES_QUICK if quick else STUDIES
    run_dir = node_run(progress)
    cohort = studies_cohort(n, progress)
    out = fault_burst(run_dir, ct_cases(cohort, n), work / "burst", kills=KILLS, progress=progress)
    out["service"]["cohort"] = cohort.name
    return out


@dataclass
class _Burst:
    """The senders' shared state: which studies still wait for a push that the PACS saw succeed."""

    studies: list[str]
    deadline: float
    todo: queue.Queue[int] = field(default_factory=queue.Queue)
    pushes: list[int] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    sent: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.pushes, self.failures = [0] * len(self.studies), [0] * len(self.studies)
        for i in range(len(self.studies)):
            self.todo.put(i)

    def sender(self, pacs: Any) -> None:
        while time.monotonic() < self.deadline:
            try:
                i = self.todo.get_nowait()
            except queue.Empty:
                return
            self.pushes[i] += 1
            try:
                pacs.send("workbench", [self.studies[i]], 120)
                self.sent.add(i)
            except Exception:  # noqa: BLE001 - the service was killed under the push, or not up yet: push again
                self.failures[i] += 1
                time.sleep(1.0)
                self.todo.put(i)


def fault_burst(run: Path, cases: list[Any], work: Path, *, kills: int = KILLS, steps: int = STEPS,
                quiet_s: float = QUIET_S, timeout_s: float = 1800.0, progress: bool = False) -> dict[str, Any]:
    """``cases`` as studies through Orthanc into ``workbench serve``, killed ``kills`` times (module docstring)."""
    from workbench.bench.serve_bench import service_rig

    shutil.rmtree(work, ignore_errors=True)
    with service_rig(work, run, cases, steps=steps, progress=progress, quiet_s=quiet_s, retry_s=5.0) as rig:
        node, pacs, studies, serve = rig.node, rig.pacs, rig.studies, rig.serve
        t0 = time.monotonic()
        burst = _Burst(studies, t0 + timeout_s)
        log: list[dict[str, Any]] = []
        try:
            serve.start()
            senders = [threading.Thread(target=burst.sender, args=(pacs,), daemon=True) for _ in range(SENDERS)]
            for s in senders:
                s.start()
            for k in range(kills):
                log.append(_kill_and_restart(serve, node, k, kills, len(studies), t0, burst.deadline))
            ended = _wait_ended(node, burst, senders, serve, progress)
            wall = time.monotonic() - t0
        finally:
            serve.stop()
        out = tally(node, pacs, studies, [len(list(Path(c.series_dir).iterdir())) + 1 for c in cases])
    s = out["service"]
    s.update({"kills": len(log), "restarts": sum(1 for k in log if k.get("restart_s") is not None),
              "kill_log": log, "ended_in_time": ended, "burst_wall_s": round(wall, 1),
              "pushes": sum(burst.pushes), "pushes_failed": sum(burst.failures),
              "studies_pushed_more_than_once": sum(1 for p in burst.pushes if p > 1),
              "steps": steps, "quiet_s": quiet_s, "senders": SENDERS, "cpus": os.cpu_count()})
    return out


def _stages(node: Path) -> dict[str, str]:
    """Each study in work/ and the last stage its state.json records."""
    from workbench.service.inbox import read_state

    out = {}
    for w in sorted((node / "service" / "work").iterdir()):
        if w.is_dir() and not w.name.startswith("."):
            try:
                out[w.name] = str(read_state(w).get("stage"))
            except (OSError, ValueError):  # moved on this instant
                continue
    return out


def _kill_and_restart(serve: Any, node: Path, k: int, kills: int, n: int, t0: float,
                      deadline: float) -> dict[str, Any]:
    """Kill ``k`` (0-based): once ``k / (kills + 1)`` of the studies ended, at its preferred moment (a study being
    scored for the first, being delivered for the others) or after ``KILL_AIM_S`` at any study in work/."""
    from workbench.service.inbox import folder_counts

    root = node / "service"
    wanted = ("received",) if k == 0 else ("scored", "stored", "stowed", "fhir")
    threshold = (k * n) // (kills + 1)
    aim_from: float | None = None
    while time.monotonic() < deadline:
        c = folder_counts(root)
        if c["done"] + c["quarantine"] >= n:
            return {"kill": k + 1, "skipped": "every study had ended"}
        if c["done"] + c["quarantine"] >= threshold:
            aim_from = aim_from or time.monotonic()
            stages = _stages(node)
            late = time.monotonic() - aim_from > KILL_AIM_S
            if any(s in wanted for s in stages.values()) or (late and stages):
                pid = serve.pid
                serve.kill()
                at = time.monotonic()
                serve.start()
                return {"kill": k + 1, "pid": pid, "at_s": round(at - t0, 1), "work_stages": sorted(stages.values()),
                        "aimed_at": wanted[0] if not late else "any", "incoming": c["incoming"],
                        "ended_before": c["done"] + c["quarantine"], "restart_s": round(time.monotonic() - at, 1)}
        time.sleep(0.02)
    return {"kill": k + 1, "skipped": "the burst's time ran out"}


def _wait_ended(node: Path, burst: _Burst, senders: list[threading.Thread], serve: Any, progress: bool,
                stall_s: float = 600.0) -> bool:
    """Wait (bounded by the burst's deadline, and ``stall_s`` without progress) until every push was taken and
    nothing waits in incoming/ or work/; a service that died on its own is started again (and said so)."""
    from tqdm import tqdm

    from workbench.service.inbox import folder_counts

    n = len(burst.studies)
    last, last_t = -1, time.monotonic()
    with tqdm(total=n, desc="studies ended", disable=not progress) as bar:
        while time.monotonic() < burst.deadline:
            c = folder_counts(node / "service")
            ended = min(n, c["done"] + c["quarantine"])
            bar.update(ended - bar.n)
            pushing = any(s.is_alive() for s in senders)
            if not pushing and len(burst.sent) == n and c["incoming"] == 0 and c["work"] == 0:
                return True
            if not serve.running():
                raise WorkbenchError(f"the service exited on its own during the burst; see {serve.log}")
            if ended != last:
                last, last_t = ended, time.monotonic()
            elif time.monotonic() - last_t > stall_s:
                return False
            time.sleep(0.5)
    return False


__all__ = ["fault_burst", "run"]
