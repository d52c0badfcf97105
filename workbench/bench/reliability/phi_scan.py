"""PHI leak scan (issue 20): every artifact a federation, the node service and the reports write, and every message a
node sends, searched for every PHI string of the cohort's truth, in every format the same fact could leak in.

What is made, on one cohort (quick: the tiny preset; full: the small preset, whose truth gives over 10,000 strings):
1. a DP federation (Flower simulation, a few rounds, a tiny budget) with a mod capturing every node message: its RUN
   (checkpoints, rounds.json, calibration, similar-case indexes, the server's audit log), each node's state (privacy
   ledger, audit log, local metrics), the nodes' caches, the captured messages, its log and Ray's logs;
2. reports in export mode (``workbench report``) for a few cases, with each command's output;
3. the node service (``workbench serve``) scoring a couple of studies an Orthanc on loopback sends it (full run);
4. the notebooks the notebook test runs, executed headless with their outputs (full run).

Everything under the work folder is scanned except what is exempt by design, and exempt files are scanned too,
their finds counted apart (``EXEMPT``): the hospital's own records fed in, and what the service keeps at the node for
the hospital in clinical mode. Figures: ``keys`` (``phi_strings_checked``, ``phi_leaks``), the strings by kind and
those skipped by reason, artifacts by kind (files, bytes), messages captured, each leak (kind, file, masked
context), the exempt files by reason with what was found in them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

# (folder under work, glob under it, why it may carry identifiers): the hospital's data, or kept for it in clinical
# mode; never sent anywhere but the hospital's own PACS and EHR
EXEMPT: dict[str, list[tuple[str, str]]] = {
    "cohort": [("*", "input: the hospital's own records (notes with PHI, manifests), read by the nodes")],
    "service": [
        ("pacs/*", "input: the Orthanc sandbox's storage, standing for the hospital's PACS"),
        ("marks/*", "input: the radiologists' mark SRs, objects of the patient's study"),
        ("node/service/notes/*", "input: the notes the hospital drops for the service, named by accession number"),
        ("node/service/*/dicom/*", "the studies as the hospital's PACS sent them, kept at the node"),
        ("node/service/*/study.json", "node-local: the accession number that finds the study's note "
                                      "(service/inbox.py: never logged, never sent)"),
        ("node/service/*/*/note.*", "node-local by design: the hospital's note, moved from the drop folder into "
                                    "its study's folder (service/worker.py)"),
        ("node/service/done/*/reports/*", "clinical mode by design: the reports go to the hospital's own PACS and EHR"),
        ("node/service/outbox/*", "clinical mode by design: FHIR bundles for the hospital's own EHR"),
    ],
    "notebooks": [
        ("pacs/*", "input: the Orthanc sandbox's storage, standing for the hospital's PACS"),
        ("mark.dcm", "input: the radiologist's mark SR, an object of the patient's study"),
    ],
}


def phi_set(cohort: Path) -> Any:
    from workbench.bench.reliability.phi_strings import cohort_phi

    return cohort_phi(cohort)


def scan_work(work: Path, phi: Any, folders: list[str]) -> dict[str, Any]:
    """Scan ``work/<folder>`` for each folder (``EXEMPT`` applied); the scanner's figures."""
    from workbench.bench.reliability.phi_scanner import Scanner
    from workbench.bench.reliability.phi_search import Matcher

    scanner = Scanner(Matcher(phi.kinds), work)
    for folder in folders:
        scanner.scan_tree(work / folder, EXEMPT.get(folder, []))
    return {**scanner.figures(), "leak_count": scanner.leak_count}


def strings_figures(phi: Any) -> dict[str, Any]:
    return {"checked": len(phi.kinds), "by_kind": phi.by_kind(), "skipped": sum(phi.skipped.values()),
            "skipped_by_reason": dict(phi.skipped), "cases": phi.cases, "cohort": ", ".join(phi.cohorts),
            "search": "case-insensitive; a name as a whole word, a number as a whole number (not inside a longer "
                      "number, a decimal or a UID); text as UTF-8, binary as UTF-8 and UTF-16-LE"}


def run(*, quick: bool, work: Path, progress: bool) -> dict[str, Any]:
    from workbench.bench.common import cached_cohort
    from workbench.bench.reliability.phi_artifacts import execute_notebooks, export_reports, service_studies
    from workbench.bench.reliability.phi_federation import cohort_view, run_phi_federation
    from workbench.jsonout import write_json

    work = Path(work) / ("quick" if quick else "full")  # the modes make their artifacts from different cohorts
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps: dict[str, float] = {}
    made_in = work / "seconds_to_make.json"  # a resumed step takes no time: what making it took is kept here
    to_make: dict[str, float] = json.loads(made_in.read_text()) if made_in.is_file() else {}

    def step(name: str, t: float) -> None:
        steps[name] = round(time.perf_counter() - t, 1)
        if name not in to_make or steps[name] > 1.0:
            to_make[name] = steps[name]
            write_json(made_in, to_make)
        if progress:
            print(f"phi_scan: {name} {steps[name]} s", file=sys.stderr, flush=True)  # stdout: the JSON

    t = time.perf_counter()
    source = cached_cohort("tiny", 7, progress=progress) if quick else cached_cohort("small", 0, progress=progress)
    cohort = cohort_view(source, work / "cohort")
    phi = phi_set(source)
    step("cohort and strings", t)
    t = time.perf_counter()
    fed = run_phi_federation(cohort, work / "federation", rounds=1 if quick else 2,
                             readers="test" if quick else "shipped")
    step("federation", t)
    run_dir = work / "federation" / "run"
    t = time.perf_counter()
    reports = export_reports(run_dir, cohort, work / "reports", 1 if quick else 3, steps=4)
    step("reports", t)
    made: dict[str, Any] = {"federation": fed, "reports": reports}
    folders = ["cohort", "federation", "reports"]
    if not quick:
        t = time.perf_counter()
        made["service"] = service_studies(run_dir, cohort, work / "service", 2, steps=4)
        step("service", t)
        t = time.perf_counter()
        made["notebooks"] = execute_notebooks(run_dir, cohort, work / "notebooks", steps=4)
        step("notebooks", t)
        folders += ["service", "notebooks"]
    t = time.perf_counter()
    scan = scan_work(work, phi, folders)
    step("scan", t)
    return {"keys": {"phi_strings_checked": len(phi.kinds), "phi_leaks": scan.pop("leak_count")},
            "strings": strings_figures(phi), "messages_captured": fed["messages"], "made": made,
            **scan, "exempt_rules": {f: dict(rules) for f, rules in EXEMPT.items()},
            "not_made": [] if not quick else ["service (full run)", "notebooks (full run)"],
            "seconds": {**steps, "total": round(time.perf_counter() - t0, 1)},
            "seconds_to_make": {**to_make, "total": round(sum(to_make.values()), 1)}}
