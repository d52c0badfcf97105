"""The ``[service]`` table of ``node.toml``: where the service listens, which PACS and EHR it answers to.

Every key has a default a single-hospital test bed can use; a hospital sets at least ``run`` (the model RUN the
node scores with) and its PACS. Paths are relative to NODE_DIR unless absolute::

    [service]
    run = "/opt/workbench/runs/final"      # the RUN (model + calibrators) to score with
    site = "hospital_a"                    # whose calibrators (default: [node] name)
    ae_title = "WORKBENCH"                 # the service's own AE title
    host = "127.0.0.1"                     # address the DICOM listener binds to
    port = 11112
    allowed_calling_aets = ["ORTHANC"]     # associations from other AE titles are rejected; [] accepts any
    quiet_s = 10.0                         # a study is complete once nothing arrived for it this long
    notes_dir = "service/notes"            # drop folder: <AccessionNumber>.txt or .json (FHIR DocumentReference)
    steps = 32                             # Integrated Gradients steps of the report's explanation
    retry_s = 30.0                         # wait before sending again to a PACS or EHR that did not answer
    fast = true                            # score with the RUN's ONNX export when it has a current one

    [service.pacs]                         # where the SR goes (C-STORE)
    ae_title = "ORTHANC"
    host = "127.0.0.1"
    port = 4242
    stow_url = ""                          # optional: also STOW-RS to this DICOMweb studies endpoint

    [service.fhir]
    outbox = "service/outbox"              # one Bundle per scored study, always written
    url = ""                               # optional: POST the Bundle to this FHIR base URL
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

NODE_FILE = "node.toml"


@dataclass(frozen=True)
class PacsTarget:
    ae_title: str = "ORTHANC"
    host: str = "127.0.0.1"
    port: int = 4242
    stow_url: str = ""


@dataclass(frozen=True)
class ServiceConfig:
    node_dir: Path
    run: Path
    site: str
    ae_title: str = "WORKBENCH"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aets: tuple[str, ...] = ()
    quiet_s: float = 10.0
    notes_dir: Path = Path("service/notes")
    steps: int = 32
    retry_s: float = 30.0
    fast: bool = True
    pacs: PacsTarget = field(default_factory=PacsTarget)
    fhir_outbox: Path = Path("service/outbox")
    fhir_url: str = ""

    @property
    def root(self) -> Path:
        """The service's folders: incoming/, work/, done/, quarantine/ and its audit log."""
        return self.node_dir / "service"


def _here(node: Path, p: str) -> Path:
    return Path(p) if Path(p).is_absolute() else node / p


def read_service(node_dir: str | Path) -> ServiceConfig:
    """``[service]`` of ``NODE_DIR/node.toml``; a clear error naming the file and the key when missing or wrong."""
    node = Path(node_dir)
    path = node / NODE_FILE
    if not path.is_file():
        raise WorkbenchError(f"{node}: no {NODE_FILE}; run `workbench node init {node} --site-dir DIR --name SITE` "
                             "and add a [service] table (README: At the hospital)")
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise WorkbenchError(f"{path}: not valid TOML ({exc})") from None
    s: dict[str, Any] = d.get("service") or {}
    if "run" not in s:
        raise WorkbenchError(f"{path}: no [service] run = \"RUN\" (the model RUN the service scores with)")
    unknown = set(s) - {"run", "site", "ae_title", "host", "port", "allowed_calling_aets", "quiet_s", "notes_dir",
                        "steps", "retry_s", "fast", "pacs", "fhir"}
    if unknown:
        raise WorkbenchError(f"{path}: unknown [service] keys {sorted(unknown)}")
    try:
        pacs = PacsTarget(**{k: v for k, v in (s.get("pacs") or {}).items()})
        fhir = s.get("fhir") or {}
        c = ServiceConfig(
            node_dir=node, run=_here(node, str(s["run"])), site=str(s.get("site") or d.get("node", {}).get("name", "")),
            ae_title=str(s.get("ae_title", "WORKBENCH")), host=str(s.get("host", "127.0.0.1")),
            port=int(s.get("port", 11112)), allowed_calling_aets=tuple(str(a) for a in s.get("allowed_calling_aets", [])),
            quiet_s=float(s.get("quiet_s", 10.0)), notes_dir=_here(node, str(s.get("notes_dir", "service/notes"))),
            steps=int(s.get("steps", 32)), retry_s=float(s.get("retry_s", 30.0)), fast=bool(s.get("fast", True)),
            pacs=PacsTarget(pacs.ae_title, pacs.host, int(pacs.port), pacs.stow_url),
            fhir_outbox=_here(node, str(fhir.get("outbox", "service/outbox"))), fhir_url=str(fhir.get("url", "")))
    except (TypeError, ValueError) as exc:
        raise WorkbenchError(f"{path}: a bad [service] value ({exc})") from None
    for name, aet in (("ae_title", c.ae_title), ("pacs.ae_title", c.pacs.ae_title)):
        if not 0 < len(aet) <= 16:
            raise WorkbenchError(f"{path}: [service] {name} {aet!r}: an AE title has 1-16 characters")
    if not c.site:
        raise WorkbenchError(f"{path}: [service] site (whose calibrators) is not set and [node] has no name")
    return c


def service_toml(run: str | Path, *, site: str, port: int, pacs_port: int, pacs_aet: str = "ORTHANC",
                 allowed: tuple[str, ...] = ("ORTHANC",), quiet_s: float = 10.0, steps: int = 32,
                 fhir_url: str = "", stow_url: str = "", retry_s: float = 30.0, fast: bool = True) -> str:
    """A ``[service]`` table to append to node.toml (tests, ``bench serve`` and the README's example)."""
    def q(v: object) -> str:
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "\n".join([
        "[service]", f"run = {q(run)}", f"site = {q(site)}", 'ae_title = "WORKBENCH"', 'host = "127.0.0.1"',
        f"port = {int(port)}", f"allowed_calling_aets = [{', '.join(q(a) for a in allowed)}]",
        f"quiet_s = {float(quiet_s)}", f"steps = {int(steps)}", f"retry_s = {float(retry_s)}",
        f"fast = {'true' if fast else 'false'}", "",
        "[service.pacs]", f"ae_title = {q(pacs_aet)}", 'host = "127.0.0.1"', f"port = {int(pacs_port)}",
        f"stow_url = {q(stow_url)}", "", "[service.fhir]", 'outbox = "service/outbox"', f"url = {q(fhir_url)}", ""])


__all__ = ["PacsTarget", "ServiceConfig", "read_service", "service_toml"]
