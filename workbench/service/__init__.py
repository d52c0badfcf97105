"""The node's inference service (``workbench serve NODE_DIR``): studies in from the PACS, reports back out.

``config`` reads the ``[service]`` part of ``node.toml``; ``inbox`` keeps every study in exactly one folder of
its life (incoming, work, done, quarantine) so that a restart finds what was in flight; ``listener`` is the DICOM
Storage SCP that fills ``incoming``; ``outbound`` sends the SR back to the PACS (C-STORE, optionally STOW-RS) and
the FHIR Bundle to the EHR; ``worker`` scores a quiet study and moves it on; ``serve`` ties them together.
``pacs_sandbox`` starts a real Orthanc on loopback for rehearsals, tests and ``bench serve``.
"""
