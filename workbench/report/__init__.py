"""Diagnostic reports: one content, four renderers (PDF, HTML, DICOM SR, FHIR)."""
