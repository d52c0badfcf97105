"""Data: DICOM loading, cases, de-identification, preprocessing, ingestion. Knows no model."""

from workbench.data.case import Case, find_case, load_cases
from workbench.data.deid import deidentify
from workbench.data.dicom_io import load_ct_series

__all__ = ["Case", "deidentify", "find_case", "load_cases", "load_ct_series"]
