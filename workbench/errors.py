"""One error family for everything the workbench refuses.

Every refusal is a :class:`WorkbenchError` whose message is one line naming the file, folder or case and the
reason, so a batch can list it and the CLI can print it without a traceback.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: a refusal with a one-line, user-facing message."""


class DicomError(WorkbenchError):
    """A DICOM file or series the loader refuses (not DICOM, truncated, wrong modality, broken geometry)."""


class NotCTError(DicomError):
    """The series is not CT (the message names the modality found)."""


class SeriesGeometryError(DicomError):
    """Slices missing, several series mixed, or orientation / pixel size inconsistent."""


class CaseError(WorkbenchError):
    """A case that cannot be used: unknown id, missing files, bad nodule centre, bad note."""


class CohortError(WorkbenchError):
    """Bad cohort request (unknown preset, impossible sizes) or a cohort folder that breaks the contract."""
