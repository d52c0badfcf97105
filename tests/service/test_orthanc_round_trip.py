"""The node's inference service against a real PACS: Orthanc on 127.0.0.1 sends studies to `workbench serve`, which
scores the good one and sends its SR back into Orthanc, and quarantines the bad ones with their reasons; killed in
the middle of a batch and restarted, it loses nothing and sends nothing twice."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.helpers.studies import (
    ServeProcess,
    accession,
    as_mr,
    ct_files,
    mark_for,
    wait_for,
    with_cut_slice,
    write_node,
)
from tests.helpers.tools import has_tool
from workbench.data.case import find_site_case
from workbench.service import pacs_sandbox
from workbench.service.pacs_sandbox import OrthancSandbox, free_port

pytestmark = pytest.mark.skipif(pacs_sandbox.available() is not None, reason=str(pacs_sandbox.available()))
OWN = "nodule-workbench"


def _cases(cohort: Path, n: int, split: str | None = None) -> list:  # noqa: ANN401
    site = cohort / "hospital_a"
    cases = [find_site_case(site, f"hospital_a_{i:04d}") for i in range(8)]
    return [c for c in cases if split is None or c.split == split][:n]


def _workbench_srs(pacs: OrthancSandbox, study_id: str, folder: Path) -> list[pydicom.Dataset]:
    out = []
    for inst in pacs.instances_of(study_id, "SR"):
        ds = pydicom.dcmread(pacs.download(inst["ID"], folder / f"{inst['ID']}.dcm"))
        if str(ds.get("Manufacturer", "")).startswith(OWN):
            out.append(ds)
    return out


def _risk_in_sr(ds: pydicom.Dataset) -> float:
    """The 'Probability of cancer' numeric value, found anywhere in the SR's content tree."""
    def walk(items):  # noqa: ANN001, ANN202
        for it in items:
            if it.get("ValueType") == "NUM" and it.ConceptNameCodeSequence[0].CodeMeaning == "Probability of cancer":
                yield float(it.MeasuredValueSequence[0].NumericValue)
            yield from walk(it.get("ContentSequence", []))
    values = list(walk(ds.ContentSequence))
    assert len(values) == 1
    return values[0]


def test_orthanc_sends_studies_the_service_scores_the_good_one_into_the_pacs_and_quarantines_the_bad(
        tiny_calibrated_run: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    from pynetdicom import AE

    from federated.audit import verify
    from workbench.report.study import StudyRequest, predict_study

    good, no_mark, mr_src, cut_src = _cases(tiny_cohort, 4)
    port = free_port()
    node = write_node(tmp_path / "node", tiny_calibrated_run, site="hospital_a", port=port, pacs_port=0)
    notes = node / "service" / "notes"
    notes.mkdir(parents=True)
    (notes / f"{accession(good)}.txt").write_text(good.note)
    mark = mark_for(good, tmp_path / "mark.dcm")
    mr = as_mr(mr_src, tmp_path / "mr")
    cut, cut_uid = with_cut_slice(cut_src, tmp_path / "cut")
    with OrthancSandbox(tmp_path / "pacs", modalities={"workbench": ("WORKBENCH", port)}) as pacs:
        assert pacs.listening_addresses() == ["127.0.0.1"]  # Orthanc 1.10 binds every interface unless shimmed
        toml = node / "node.toml"
        toml.write_text(toml.read_text().replace("port = 0", f"port = {pacs.dicom_port}"))
        studies = {}
        for name, files in (("good", [*ct_files(good), mark]), ("no_mark", ct_files(no_mark)[:10]), ("mr", mr),
                            ("cut", cut)):
            for f in files:
                studies[name] = pacs.upload(f)["ParentStudy"]
        serve = ServeProcess(node, tmp_path / "serve.log").start()
        try:
            # C-ECHO from the PACS's AE title is answered; another AE title is not let in
            echo = AE(ae_title="ORTHANC")
            echo.add_requested_context("1.2.840.10008.1.1")
            assoc = echo.associate("127.0.0.1", port, ae_title="WORKBENCH")
            assert assoc.is_established and assoc.send_c_echo().Status == 0
            assoc.release()
            stranger = AE(ae_title="STRANGER")
            stranger.add_requested_context("1.2.840.10008.1.1")
            assert not stranger.associate("127.0.0.1", port, ae_title="WORKBENCH").is_established
            pacs.send("workbench", list(studies.values()))
            c = wait_for(node, 4, timeout_s=300)
        finally:
            assert serve.stop() == 0
        assert c["done"] == 1 and c["quarantine"] == 3, c
        reasons = [json.loads((q / "reason.json").read_text())["reason"]
                   for q in sorted((node / "service" / "quarantine").iterdir())]
        assert any("no nodule mark in the study" in r for r in reasons), reasons
        assert any("no CT series (found: MR (6 files), SR (1 files))" in r or "no CT series" in r and "MR" in r
                   for r in reasons), reasons
        cut_reason = next(r for r in reasons if "no nodule mark" not in r and "MR" not in r)
        assert re.search(r"quarantine/study-[0-9a-f]{12}/dicom/inst-[0-9a-f]{12}\.dcm", cut_reason), cut_reason

        # the SR is in Orthanc, in the good study, exactly once; pydicom and dsrdump read the same risk ...
        srs = _workbench_srs(pacs, studies["good"], tmp_path)
        assert len(srs) == 1
        for others in ("no_mark", "mr", "cut"):
            assert _workbench_srs(pacs, studies[others], tmp_path) == []
    done = next((node / "service" / "done").iterdir())
    risk_pct = _risk_in_sr(srs[0])
    if has_tool("dsrdump"):
        sr_file = tmp_path / "sr.dcm"
        srs[0].save_as(sr_file)
        dump = subprocess.run(["dsrdump", "+Pu", str(sr_file)], capture_output=True, text=True, timeout=60).stdout
        shown = re.search(r'"Probability of cancer"\)="([0-9.]+)" \(%,UCUM', dump)  # DS writes 32 as "32.0"
        assert shown is not None and float(shown.group(1)) == pytest.approx(risk_pct, abs=1e-9), dump
    # ... which is what `workbench predict` says on the same files
    res = predict_study(StudyRequest(tiny_calibrated_run, done / "dicom", nodule_from=done / "dicom" / next(
        f.name for f in (done / "dicom").iterdir() if pydicom.dcmread(f, stop_before_pixels=True).Modality == "SR"),
        note=done / "note.txt", site="hospital_a", node_dir=node))
    served = json.loads((done / "result.json").read_text())
    assert abs(served["probability"] - res["probability"]) <= 1e-9
    assert risk_pct == pytest.approx(round(100 * res["probability"], 1), abs=1e-9)
    assert srs[0].StudyInstanceUID == pydicom.dcmread(ct_files(good)[0], stop_before_pixels=True).StudyInstanceUID
    # the FHIR Bundle in the outbox is a Bundle a FHIR library reads
    from fhir.resources.R4B.bundle import Bundle  # the reports are FHIR R4

    bundle = Bundle.model_validate_json((node / "service" / "outbox" / f"{done.name}.json").read_text())
    assert bundle.entry
    # every step is in the chained audit log, which names studies by pseudonym only
    log = node / "service" / "service_audit.jsonl"
    assert verify(log) >= 4 * 2
    text = log.read_text() + (tmp_path / "serve.log").read_text() + (node / "service" / "status.json").read_text()
    for case in (good, no_mark, mr_src, cut_src):
        ds = pydicom.dcmread(ct_files(case)[0], stop_before_pixels=True)
        for phi in (str(ds.PatientName), str(ds.PatientID), str(ds.AccessionNumber), str(ds.StudyInstanceUID)):
            assert phi not in text
    assert cut_uid not in text


def test_a_killed_service_restarts_and_every_study_ends_done_with_exactly_one_sr_in_the_pacs(
        tiny_calibrated_run: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    cases = _cases(tiny_cohort, 3)
    port = free_port()
    node = write_node(tmp_path / "node", tiny_calibrated_run, site="hospital_a", port=port, pacs_port=0)
    notes = node / "service" / "notes"
    notes.mkdir(parents=True)
    with OrthancSandbox(tmp_path / "pacs", modalities={"workbench": ("WORKBENCH", port)}) as pacs:
        toml = node / "node.toml"
        toml.write_text(toml.read_text().replace("port = 0", f"port = {pacs.dicom_port}"))
        studies = []
        for i, case in enumerate(cases):
            (notes / f"{accession(case)}.txt").write_text(case.note)
            for f in [*ct_files(case), mark_for(case, tmp_path / f"mark{i}.dcm")]:
                sid = pacs.upload(f)["ParentStudy"]
            studies.append(sid)
        log = tmp_path / "serve.log"
        serve = ServeProcess(node, log).start()
        try:
            pacs.send("workbench", studies)
            # killed while the batch is in hand: once the first study has begun scoring
            wait_until = __import__("time").monotonic() + 120
            while __import__("time").monotonic() < wait_until and not list((node / "service" / "work").iterdir()):
                __import__("time").sleep(0.2)
            serve.kill()
            serve.start()
            c = wait_for(node, 3, timeout_s=300)
            assert c == {"incoming": 0, "work": 0, "done": 3, "quarantine": 0}, c
            assert all(len(_workbench_srs(pacs, s, tmp_path)) == 1 for s in studies)
            # a crash after the PACS took the SR but before the service wrote it down: the study is carried on
            # from "scored", the same SR (same SOP Instance UID) is sent again, and the PACS still holds one
            done = sorted((node / "service" / "done").iterdir())[0]
            state = json.loads((done / "state.json").read_text())
            (done / "state.json").write_text(json.dumps({**state, "stage": "scored"}))
            done.rename(node / "service" / "work" / done.name)
        finally:
            serve.stop()
        serve.start()
        try:
            c = wait_for(node, 3, timeout_s=120)
        finally:
            assert serve.stop() == 0
        assert c["done"] == 3 and c["work"] == 0
        assert all(len(_workbench_srs(pacs, s, tmp_path)) == 1 for s in studies)
        assert "resumed" in (node / "service" / "service_audit.jsonl").read_text()
