"""The service's DICOM listener: a Storage SCP (pynetdicom) that answers C-ECHO and writes every instance it is
sent into the inbox, under the study's pseudonym.

Associations are accepted only from the calling AE titles in ``[service] allowed_calling_aets`` (any when the
list is empty) and only for the service's own AE title. Every storage SOP class is accepted, so a wrong study (an
MR, a scanned document) arrives and is quarantined with its reason rather than refused at the door where nobody
at the hospital would see why. An instance that cannot be written is answered with a failure status (0xA700) so
the PACS knows to send it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from workbench.service.config import ServiceConfig
from workbench.service.inbox import Inbox

OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0xA700, 0xC000


def start_listener(cfg: ServiceConfig, inbox: Inbox, key_of: Callable[[str], str],
                   audit: Callable[[dict[str, Any]], None]) -> Any:
    """Start the SCP in its own thread; returns the pynetdicom server (``.shutdown()`` stops it). ``key_of``: the
    pseudonym of a UID (study folders and instance files are named by it, never by the UID)."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    ae = AE(ae_title=cfg.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60.0
    ae.require_called_aet = True
    if cfg.allowed_calling_aets:
        ae.require_calling_aet = list(cfg.allowed_calling_aets)
    ae.maximum_associations = 8
    for cx in AllStoragePresentationContexts:
        if cx.abstract_syntax is not None:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)

    def on_store(event: Any) -> int:
        try:
            ds = event.dataset
            study_uid = str(ds.get("StudyInstanceUID", "") or "")
            if not study_uid:
                return CANNOT_UNDERSTAND
            key = key_of(study_uid)
            meta = {"accession": str(ds.get("AccessionNumber", "") or ""),
                    "calling_aet": str(event.assoc.requestor.ae_title)}
            name = key_of(str(event.request.AffectedSOPInstanceUID)).replace("study-", "inst-")
            inbox.receive(key, name, bytes(event.encoded_dataset()), meta)
            return 0x0000
        except Exception as exc:  # noqa: BLE001 - any failure is answered to the PACS, which resends; never a crash
            audit({"event": "receive_failed", "why": f"{type(exc).__name__}"})
            return OUT_OF_RESOURCES

    def on_echo(event: Any) -> int:
        return 0x0000

    return ae.start_server((cfg.host, cfg.port), block=False,
                           evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_C_ECHO, on_echo)])


__all__ = ["start_listener"]
