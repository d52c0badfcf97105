"""What leaves the service for the hospital's own systems: the SR to the PACS (DICOM C-STORE, optionally STOW-RS)
and the FHIR Bundle to the EHR (a POST). Each call has a bounded timeout and raises ``DeliveryError`` naming the
target and what it answered, so the worker keeps the study in ``work/`` and tries again later rather than losing
it or quarantining a good study because the PACS was down."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.service.config import PacsTarget

TIMEOUT_S = 30.0


class DeliveryError(WorkbenchError):
    """A PACS or EHR that did not take what was sent (unreachable, refused, failed status)."""


def c_store(path: Path, pacs: PacsTarget, calling_aet: str) -> None:
    """Send one DICOM file to the PACS by C-STORE; raises ``DeliveryError`` unless it answers success (0x0000) or
    a warning (0xB000-0xB007: stored with coercion)."""
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = TIMEOUT_S
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    where = f"PACS {pacs.ae_title}@{pacs.host}:{pacs.port}"
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title)
    if not assoc.is_established:
        raise DeliveryError(f"{where}: association refused or no answer (C-STORE of {path.name})")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    code = int(getattr(status, "Status", -1)) if status else -1
    if not (code == 0 or 0xB000 <= code <= 0xB007):
        raise DeliveryError(f"{where}: C-STORE of {path.name} failed (status 0x{max(code, 0):04X}"
                            f"{'' if status else ', no answer'})")


def stow_rs(path: Path, url: str) -> None:
    """POST one DICOM file to a DICOMweb studies endpoint (STOW-RS, multipart/related; application/dicom)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + path.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode())
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
               "Accept": "application/dicom+json"}
    _post(url, body, headers, f"STOW-RS of {path.name}")


def post_fhir(bundle: Path, url: str) -> None:
    """POST the FHIR Bundle to ``url`` as configured (the EHR's endpoint for it, e.g. ``[base]/Bundle``)."""
    data = bundle.read_bytes()
    json.loads(data)  # never send a torn file
    _post(url, data, {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
          f"FHIR POST of {bundle.name}")


def _post(url: str, body: bytes, headers: dict[str, str], what: str) -> None:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:  # noqa: S310 - the hospital's configured endpoint
            if r.status >= 300:
                raise DeliveryError(f"{url}: {what} answered HTTP {r.status}")
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{url}: {what} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"{url}: {what} failed ({exc})") from None


__all__ = ["DeliveryError", "c_store", "post_fhir", "stow_rs"]
