"""Delivery to a PACS that is down, then up, and to DICOMweb and an EHR's FHIR endpoint: the scored study waits in
work/ (not quarantined, not lost), is sent once the PACS answers, then by STOW-RS, and its Bundle is POSTed; real
servers on 127.0.0.1 (a pynetdicom Storage SCP as the PACS, an http.server for STOW-RS and FHIR), the service run
in-process step by step."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pydicom

from tests.helpers.studies import ct_files, mark_for, write_node
from workbench.data.case import find_site_case
from workbench.service.config import read_service
from workbench.service.pacs_sandbox import free_port
from workbench.service.serve import Service


def _pacs(port: int, received: list[pydicom.Dataset]):  # noqa: ANN202 - the pynetdicom server
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    ae = AE(ae_title="ORTHANC")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context("1.2.840.10008.1.1")  # Verification: C-ECHO

    def store(event):  # noqa: ANN001, ANN202
        received.append(event.dataset)
        return 0x0000

    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])


class _EHR(http.server.BaseHTTPRequestHandler):
    posted: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        kind = self.headers["Content-Type"]
        _EHR.posted.append({"path": self.path, "type": kind,
                            "body": json.loads(body) if kind.startswith("application/fhir+json") else body})
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_study_waits_for_a_pacs_that_is_down_and_is_sent_once_it_answers(
        tiny_calibrated_run: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    case = find_site_case(tiny_cohort / "hospital_a", "hospital_a_0003")
    pacs_port = free_port()
    ehr = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EHR)
    threading.Thread(target=ehr.serve_forever, daemon=True).start()
    node = write_node(tmp_path / "node", tiny_calibrated_run, site="hospital_a", port=free_port(),
                      pacs_port=pacs_port)
    toml = node / "node.toml"
    web = f"http://127.0.0.1:{ehr.server_port}"
    toml.write_text(toml.read_text().replace('\nurl = ""', f'\nurl = "{web}/fhir/Bundle"')
                    .replace('stow_url = ""', f'stow_url = "{web}/dicomweb/studies"'))
    svc = Service(read_service(node), echo=lambda _line: None)
    try:
        key = "study-0123456789ab"
        for f in [*ct_files(case), mark_for(case, tmp_path / "mark.dcm")]:
            svc.inbox.receive(key, f.stem, f.read_bytes(), {"accession": "", "calling_aet": "ORTHANC"})
        assert svc.inbox.quiet(0.0) == [key]
        out = svc._handle(svc.inbox.take(key))  # noqa: SLF001 - one step, no listener
        work = node / "service" / "work" / key
        assert out == 0 and work.is_dir(), "the PACS is down: the study waits in work/"
        state = json.loads((work / "state.json").read_text())
        assert state["stage"] == "scored" and (work / "reports" / "report_sr.dcm").is_file()
        audit = (node / "service" / "service_audit.jsonl").read_text()
        assert "delivery_failed" in audit and f"127.0.0.1:{pacs_port}" in audit
        received: list[pydicom.Dataset] = []
        server = _pacs(pacs_port, received)
        try:
            svc.retry_at[key] = time.monotonic()  # due now
            assert svc.step() == 1
        finally:
            server.shutdown()
        assert (node / "service" / "done" / key).is_dir() and not work.exists()
        assert len(received) == 1 and received[0].SOPInstanceUID == pydicom.dcmread(
            node / "service" / "done" / key / "reports" / "report_sr.dcm").SOPInstanceUID
        stow, fhir = _EHR.posted  # STOW-RS (the same SR, multipart/related), then the Bundle
        assert stow["path"] == "/dicomweb/studies" and stow["type"].startswith('multipart/related; type="application/dicom"')
        assert b"DICM" in stow["body"]
        assert fhir["path"] == "/fhir/Bundle" and fhir["type"] == "application/fhir+json"
        assert fhir["body"]["resourceType"] == "Bundle"
        assert (node / "service" / "outbox" / f"{key}.json").is_file()
    finally:
        ehr.shutdown()
        svc.close()


def test_node_doctor_checks_the_service_and_names_the_fix_for_a_pacs_that_does_not_answer(
        tiny_calibrated_run: Path, tmp_path: Path) -> None:
    from workbench.service.doctor import service_checks

    pacs_port = free_port()
    node = write_node(tmp_path / "node", tiny_calibrated_run, site="hospital_a", port=free_port(),
                      pacs_port=pacs_port)
    checks = {c.name: c for c in service_checks(node)}
    assert checks["service config"].ok and checks["service model"].ok
    assert checks["fast path"].ok and "workbench fast" in checks["fast path"].fix  # optional: PyTorch scores
    assert checks["service"].ok and "is free" in checks["service"].detail
    assert checks["PACS"].ok is False and "[service.pacs]" in checks["PACS"].fix
    server = _pacs(pacs_port, [])
    try:
        assert {c.name: c for c in service_checks(node)}["PACS"].ok
    finally:
        server.shutdown()
    (node / "node.toml").write_text((node / "node.toml").read_text().replace("port = ", "port = x", 1))
    bad = service_checks(node)
    assert len(bad) == 1 and bad[0].ok is False and "node.toml" in bad[0].detail
