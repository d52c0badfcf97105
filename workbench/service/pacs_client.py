"""A PACS's study list and files over Orthanc's REST API (``urllib``, bounded timeouts): what the new-study
notebook lists and opens, and where tests and ``bench serve`` upload studies and find the SR the service sent.

    pacs = OrthancClient("http://127.0.0.1:8042")
    for s in pacs.studies(): ...           # MainDicomTags, PatientMainDicomTags, Series
    pacs.download_study(study_id, folder)  # every instance as a file
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from workbench.atomic import write_bytes

HTTP_TIMEOUT_S = 60.0


class OrthancClient:
    """Orthanc's REST API at ``url`` (no authentication: a loopback sandbox or a PACS reached through the
    hospital's own network controls)."""

    def __init__(self, url: str) -> None:
        self._url = url.rstrip("/")

    @property
    def url(self) -> str:
        return self._url

    def _call(self, method: str, path: str, body: bytes | None = None,
              content_type: str = "application/json", timeout_s: float = HTTP_TIMEOUT_S) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Content-Type": content_type} if body is not None else {})
        with urllib.request.urlopen(req, timeout=timeout_s) as r:  # noqa: S310 - the configured PACS
            return bytes(r.read())

    def get(self, path: str) -> Any:
        return json.loads(self._call("GET", path))

    def post(self, path: str, payload: Any, timeout_s: float = HTTP_TIMEOUT_S) -> Any:
        out = self._call("POST", path, json.dumps(payload).encode(), timeout_s=timeout_s)
        return json.loads(out) if out.strip() else None

    def upload(self, path: str | Path) -> dict[str, Any]:
        """POST one DICOM file to /instances; Orthanc's answer (ID, ParentStudy, Status)."""
        return dict(json.loads(self._call("POST", "/instances", Path(path).read_bytes(), "application/dicom")))

    def send(self, modality: str, resources: list[str], timeout_s: float = 600.0) -> Any:
        """Orthanc sends studies/series/instances (Orthanc IDs) to ``modality`` by C-STORE (synchronous)."""
        return self.post(f"/modalities/{modality}/store", {"Resources": resources, "Synchronous": True,
                                                           "Timeout": int(timeout_s)}, timeout_s=timeout_s + 30)

    def studies(self) -> list[dict[str, Any]]:
        return [self.get(f"/studies/{s}") for s in self.get("/studies")]

    def instances_of(self, study_id: str, modality: str | None = None) -> list[dict[str, Any]]:
        out = []
        for series_id in self.get(f"/studies/{study_id}")["Series"]:
            series = self.get(f"/series/{series_id}")
            if modality is None or series["MainDicomTags"].get("Modality") == modality:
                out += [self.get(f"/instances/{i}") for i in series["Instances"]]
        return out

    def download(self, instance_id: str, path: str | Path) -> Path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, self._call("GET", f"/instances/{instance_id}/file"))
        return Path(path)

    def download_study(self, study_id: str, folder: str | Path) -> list[Path]:
        """Every instance of the study as ``folder/<Orthanc instance id>.dcm``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ids = [i["ID"] for i in self.get(f"/studies/{study_id}/instances")]
        return [self.download(i, folder / f"{i}.dcm") for i in ids]


__all__ = ["OrthancClient"]
