"""``workbench bench reliability``: what leaks and what breaks, measured under attack, faults and hostile input.

One module per part, each ``run(*, quick: bool, work: Path, progress: bool) -> dict`` (its figures, JSON-ready)
and resumable through its own files under ``work``:
- ``mia``: membership inference against the federated model, without DP and at epsilon 1 and 8;
- ``phi_scan``: every artifact a federation, the node service and the reports write, and every message a node
  sends, searched for every PHI string of the cohort's truth;
- ``poison``: one node of four sends scaled, sign-flipped or random updates; FedAvg against the robust option;
- ``fuzz``: property-based fuzzing of the DICOM loader, the de-identifier and tokenizer, the SR mark reader and
  the site ingest;
- ``service_faults``: a burst of studies while the node service is killed and restarted twice;
- ``deid_baseline``: our de-identifier beside an installable outside one on notes whose names are not in our
  lexicon.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

PARTS = ("fuzz", "deid_baseline", "service_faults", "phi_scan", "poison", "mia")


def reliability_work() -> Path:
    """Where each part keeps its work and its finished figures (``<part>[-quick].json``): a killed run redoes only
    the parts not finished."""
    from workbench.bench.common import cohort_cache_root

    return cohort_cache_root().parent / "bench" / "reliability"


def run_part(name: str, *, quick: bool, progress: bool = True, fresh: bool = False) -> dict[str, Any]:
    """One part's figures: reloaded when a finished run of the same mode is kept, else run and kept."""
    from workbench.errors import WorkbenchError
    from workbench.jsonout import jsonable, write_json

    if name not in PARTS:
        raise WorkbenchError(f"--part {name}: expected one of {', '.join(PARTS)}")
    work = reliability_work() / name
    done = reliability_work() / f"{name}{'-quick' if quick else ''}.json"
    if done.is_file() and not fresh:
        return json.loads(done.read_text())
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    module = importlib.import_module(f"workbench.bench.reliability.{name}")
    result = jsonable(module.run(quick=quick, work=work, progress=progress))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    write_json(done, result)
    return result


def run_reliability_bench(*, quick: bool = False, parts: list[str] | None = None, progress: bool = True,
                          fresh: bool = False) -> dict[str, Any]:
    """Every part (or ``parts``), each resumable; the issue's named keys at the top, each part's detail under
    ``parts``."""
    from workbench.bench.common import envelope

    start = time.perf_counter()
    chosen = parts or list(PARTS)
    found = {p: run_part(p, quick=quick, progress=progress, fresh=fresh) for p in chosen}
    out: dict[str, Any] = {}
    for figures in found.values():
        out.update(figures.get("keys", {}))  # each part names its share of the contract's keys here
    out["parts"] = found
    out.update(envelope("reliability-quick" if quick else "reliability", time.perf_counter() - start))
    return out
