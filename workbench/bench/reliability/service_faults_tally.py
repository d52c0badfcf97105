"""How ``service_faults`` counts, after the service was stopped: from the node's folders and from the PACS itself,
never from what the service says about itself.

Per study (its pseudonym, the key the service files it under):

- **lost**: in neither ``done/`` nor ``quarantine/``, or done and its SR not in the PACS. Every study of the
  burst is a good one (a CT and the radiologist's mark), so each should end in ``done/``; one that ended only in
  quarantine is counted apart (``good_quarantined``) with its reason, and so is every quarantined copy of a
  study (``quarantined_copies``: a part of a study cut by a kill, or a copy pushed again after it was scored).
- **duplicated**: more than one of this service's SRs in the PACS for the study, more than one FHIR Bundle for it
  in the outbox, or more than one ``done/`` copy (scored twice).
- **half_written**: any temporary file left anywhere under ``service/`` (``atomic_write``'s ``.name.PID.tmp`` or
  a set-aside ``.old``); a done copy whose SR does not read with pydicom, whose ``report.json``, ``result.json``
  or FHIR Bundle does not load as JSON, whose state is not the last stage, or whose received instances do not all
  read; an SR in the PACS that does not read; a quarantined copy without a readable ``reason.json``.
- **scored_on_part**: a done copy scored on fewer instances than the PACS holds for the study (a study cut by a
  kill while it arrived, taken before the PACS pushed it again).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

CHECKS = {
    "studies": "the studies uploaded to the PACS and pushed to the service",
    "lost": "studies in neither done/ nor quarantine/, or done with no SR of the service's in the PACS",
    "duplicated": "studies with >1 of the service's SRs in the PACS (Orthanc, by study), >1 FHIR Bundle in the "
                  "outbox, or >1 done/ copy",
    "half_written": "temporary files left under service/; done copies whose SR (pydicom), report.json, "
                    "result.json, FHIR Bundle (JSON) or received instances do not read, or whose state is not "
                    "'fhir'; SRs in the PACS that do not read; quarantined copies without reason.json",
    "scored_on_part": "done copies holding fewer instances than the PACS holds for the study",
}


def _copies(folder: Path, key: str) -> list[Path]:
    """``key`` and the service's second copies of it (``key-1``, ...)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p.name == key or p.name.startswith(f"{key}-")))


def _outcome(done: list[Path], quarantined: list[Path]) -> str:
    if done:
        return "done + another copy quarantined" if quarantined else "done"
    return "quarantined" if quarantined else "lost"


def _reads_dicom(path: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return bool(ds.get("SOPInstanceUID"))
    except Exception:  # noqa: BLE001 - any failure to read is what is counted
        return False


def _reads_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
        return True
    except (OSError, ValueError):
        return False


def _done_faults(d: Path, bundle: Path) -> list[str]:
    faults = []
    if not _reads_dicom(d / "reports" / "report_sr.dcm"):
        faults.append("report_sr.dcm")
    faults += [f.name for f in (d / "reports" / "report.json", d / "result.json", bundle) if not _reads_json(f)]
    if _reads_json(d / "state.json") and json.loads((d / "state.json").read_text())["stage"] != "fhir":
        faults.append("state.json not at fhir")
    faults += [f"dicom/{f.name}" for f in sorted((d / "dicom").iterdir()) if not _reads_dicom(f)]
    return faults


def tally(node: Path, pacs: Any, studies: list[str], instances: list[int]) -> dict[str, Any]:
    """The figures of the module docstring; ``studies``: Orthanc IDs, ``instances``: how many each was uploaded
    with."""
    from workbench.bench.serve_bench import own_srs
    from workbench.report.source import node_secret
    from workbench.runtime.study import study_case_id

    root = node / "service"
    secret = node_secret(node)
    temps = sorted(str(p.relative_to(root)) for p in root.rglob(".*") if ".tmp" in p.name or p.name.endswith(".old"))
    problems: dict[str, list[str]] = {"lost": [], "duplicated": [], "half_written": [f"{t}: left" for t in temps],
                                      "scored_on_part": [], "good_quarantined": []}
    outcomes: Counter[str] = Counter()
    reasons: list[str] = []
    for sid, n_inst in zip(studies, instances, strict=True):
        key = study_case_id(str(pacs.get(f"/studies/{sid}")["MainDicomTags"]["StudyInstanceUID"]), secret)
        done, quarantined = _copies(root / "done", key), _copies(root / "quarantine", key)
        srs = own_srs(pacs, sid)
        bundles = sorted((root / "outbox").glob(f"{key}*.json"))
        outcomes[_outcome(done, quarantined)] += 1
        if not done and not quarantined or done and not srs:
            problems["lost"].append(f"{key}: {len(done)} done, {len(quarantined)} quarantined, {len(srs)} SRs")
        if len(srs) > 1 or len(bundles) > 1 or len(done) > 1:
            problems["duplicated"].append(f"{key}: {len(srs)} SRs, {len(bundles)} bundles, {len(done)} done")
        if quarantined and not done:
            problems["good_quarantined"].append(key)
        for q in quarantined:
            ok = _reads_json(q / "reason.json")
            if not ok:
                problems["half_written"].append(f"quarantine/{q.name}: no readable reason.json")
            else:
                reasons.append(json.loads((q / "reason.json").read_text())["reason"])
        for d in done:
            faults = _done_faults(d, root / "outbox" / f"{d.name}.json")
            problems["half_written"] += [f"done/{d.name}/{f}: does not read" for f in faults]
            got = sum(1 for _ in (d / "dicom").glob("*.dcm"))
            if got < n_inst:
                problems["scored_on_part"].append(f"done/{d.name}: {got} of {n_inst} instances")
        for sr in srs:
            if not _reads_dicom(pacs.download(sr["ID"], node.parent / "srs" / f"{sr['ID']}.dcm")):
                problems["half_written"].append(f"{key}: the SR in the PACS does not read")
    figures = {"studies": len(studies), "lost": len(problems["lost"]), "duplicated": len(problems["duplicated"]),
               "half_written": len(problems["half_written"])}
    return {"keys": {"service": dict(figures)},
            "service": {**figures, "scored_on_part": len(problems["scored_on_part"]),
                        "quarantined_copies": len(reasons) + sum(1 for p in problems["half_written"]
                                                                 if p.startswith("quarantine/")),
                        "good_studies_done": len(studies) - len(problems["good_quarantined"]) - len(problems["lost"]),
                        "good_quarantined": len(problems["good_quarantined"]), "outcomes": dict(outcomes),
                        "quarantine_reasons": sorted(Counter(r.split(":")[0][:160] for r in reasons).items()),
                        "problems": {k: v[:20] for k, v in problems.items()}, "checks": CHECKS}}


__all__ = ["CHECKS", "tally"]
