"""Studies as a hospital's PACS would hold them, made from a generated cohort's cases: the CT with the
radiologist's mark, a study without a mark, an MR, a CT with a slice whose pixel data is cut short; and the
service's node folder (the service as a process, started and killed by PID, is the library's ``ServeProcess``)."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from workbench.runtime.study import write_point_mark
from workbench.service.config import service_toml
from workbench.service.inbox import folder_counts
from workbench.service.process import ServeProcess  # noqa: F401 - the tests import it from here

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def ct_files(case) -> list[Path]:  # noqa: ANN001 - a workbench Case
    return sorted(Path(case.series_dir).iterdir())


def mark_for(case, path: Path) -> Path:  # noqa: ANN001
    """The radiologist's point mark at the generator's nodule centre, as an SR in the case's study."""
    return write_point_mark(ct_files(case)[0], case.nodule_lps_mm, path)


def accession(case) -> str:  # noqa: ANN001
    return str(pydicom.dcmread(ct_files(case)[0], stop_before_pixels=True).AccessionNumber)


def as_mr(case, folder: Path, n: int = 6) -> list[Path]:  # noqa: ANN001
    """``n`` of the case's slices relabelled as an MR series of a new study (and a mark in that study)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    out = []
    for i, f in enumerate(ct_files(case)[:n]):
        ds = pydicom.dcmread(f)
        ds.Modality, ds.SOPClassUID, ds.SOPInstanceUID = "MR", MR_IMAGE_STORAGE, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.AccessionNumber = study, series, "MR0001"
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        out.append(folder / f"mr{i:03d}.dcm")
        ds.save_as(out[-1], enforce_file_format=True)
    out.append(write_point_mark(out[0], case.nodule_lps_mm, folder / "mark.dcm"))
    return out


def with_cut_slice(case, folder: Path) -> tuple[list[Path], str]:  # noqa: ANN001
    """The case's CT (a new study) with one slice's compressed pixel data cut to half: a file the PACS stores
    (its structure is sound) but whose image does not decode. Returns the files and the cut slice's SOP UID."""
    from pydicom.encaps import encapsulate, generate_fragments

    folder.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    files = ct_files(case)
    cut = len(files) // 2
    out, cut_uid = [], ""
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID = study
        if i == cut:
            frame = b"".join(generate_fragments(ds.PixelData))
            ds.PixelData = encapsulate([frame[: len(frame) // 2]])
            cut_uid = str(ds.SOPInstanceUID)
        out.append(folder / f.name)
        ds.save_as(out[-1], enforce_file_format=True)
    out.append(write_point_mark(out[0], case.nodule_lps_mm, folder / "mark.dcm"))
    return out, cut_uid


def write_node(node: Path, run: Path, *, site: str, port: int, pacs_port: int, steps: int = 4,
               quiet_s: float = 2.0) -> Path:
    node.mkdir(parents=True, exist_ok=True)
    (node / "node.toml").write_text(f'[node]\nname = "{site}"\nsite_dir = "{node}"\n\n'
                                    + service_toml(run, site=site, port=port, pacs_port=pacs_port, steps=steps,
                                                   quiet_s=quiet_s, retry_s=2.0))
    return node


def counts(node: Path) -> dict[str, int]:
    return folder_counts(node / "service")


def wait_for(node: Path, finished: int, timeout_s: float) -> dict[str, int]:
    """Wait until ``finished`` studies are in done/ + quarantine/ and nothing waits; the counts."""
    deadline = time.monotonic() + timeout_s
    c: dict[str, int] = {}
    while time.monotonic() < deadline:
        c = counts(node)
        if c.get("done", 0) + c.get("quarantine", 0) >= finished and not c.get("work") and not c.get("incoming"):
            return c
        time.sleep(0.5)
    raise AssertionError(f"after {timeout_s} s: {c} (expected {finished} finished)")
