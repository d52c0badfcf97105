"""The source CT series as a report references it: identifiers kept (clinical) or removed and UIDs remapped (export).

Export mode follows the DICOM PS3.15 basic application level confidentiality profile for what a report
carries: patient name and ID replaced by the case's pseudonym, birth date, sex, accession number, study date
and time, study ID and referring physician emptied, and every UID (study, series, frame of reference, SOP
instance) replaced by ``2.25.<integer>`` derived with HMAC-SHA256 from the original UID and a secret kept at the
node (``SITE_DIR/.deid_secret``, created once, readable by its owner only). The same UID always maps to the same
new UID at a node, so an SR, a FHIR bundle and a de-identified copy of the images exported later all still
refer to each other, while nobody without the secret can map them back.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from workbench.atomic import atomic_write
from workbench.errors import WorkbenchError
from workbench.report.content import Patient, SourceSeries

SECRET_FILE = ".deid_secret"


def node_secret(site_dir: str | Path) -> bytes:
    """The node's UID-remapping secret, created on first use (atomic, mode 0600 from the start: the secret is
    never readable by others, not even for a moment)."""
    path = Path(site_dir) / SECRET_FILE
    if not path.is_file():
        with atomic_write(path) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def remap_uid(uid: str, secret: bytes) -> str:
    """A new UID under the 2.25 root (PS3.5 B.2), the same for the same (uid, secret); at most 64 characters."""
    digest = hmac.new(secret, uid.encode("ascii"), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def read_source(series_dir: str | Path, case_id: str, mode: str, secret: bytes | None = None
                ) -> tuple[SourceSeries, Patient]:
    """The series' UIDs and the patient's identifiers from the DICOM headers, for ``mode`` "export" or "clinical"."""
    import pydicom

    from workbench.data.dicom_io import _list_files

    if mode not in ("export", "clinical"):
        raise WorkbenchError(f"report mode {mode!r}: expected 'export' or 'clinical'")
    files = _list_files(Path(series_dir))
    headers = []
    for f in files:
        try:
            headers.append(pydicom.dcmread(f, stop_before_pixels=True))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is named with its reason
            raise WorkbenchError(f"{f}: not readable as DICOM ({exc})") from exc
    headers = [h for h in headers if "SOPInstanceUID" in h]
    if not headers:
        raise WorkbenchError(f"{series_dir}: no DICOM image to reference")
    first = headers[0]
    uids = [str(h.SOPInstanceUID) for h in headers]
    if mode == "export":
        if secret is None:
            raise WorkbenchError("export mode needs the node's UID secret")
        m = lambda u: remap_uid(str(u), secret)  # noqa: E731
        series = SourceSeries(m(first.StudyInstanceUID), m(first.SeriesInstanceUID),
                              m(first.get("FrameOfReferenceUID", first.SeriesInstanceUID)), str(first.SOPClassUID),
                              [m(u) for u in uids], manufacturer=str(first.get("Manufacturer", "")))
        return series, Patient()  # the SR writes the case id as the pseudonym; nothing else identifies
    series = SourceSeries(str(first.StudyInstanceUID), str(first.SeriesInstanceUID),
                          str(first.get("FrameOfReferenceUID", "")), str(first.SOPClassUID), uids,
                          study_date=str(first.get("StudyDate", "")), study_time=str(first.get("StudyTime", "")),
                          study_id=str(first.get("StudyID", "")),
                          referring_physician=str(first.get("ReferringPhysicianName", "")),
                          manufacturer=str(first.get("Manufacturer", "")))
    patient = Patient(str(first.get("PatientID", "")), str(first.get("PatientName", "")),
                      str(first.get("PatientBirthDate", "")), str(first.get("PatientSex", "")),
                      str(first.get("AccessionNumber", "")))
    return series, patient


__all__ = ["node_secret", "read_source", "remap_uid"]
