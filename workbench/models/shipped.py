"""The pretrained readers and fusion starting model that ship inside the package (``models/pretrained/``).

Why ship them: pretraining the two readers and the fusion layers takes longer on two cores than everything else
``make demo`` does, and a demo that pretrains small stand-ins in its time budget gets readers too weak to mean
anything. These three folders were built by the project's own ``workbench pretrain-notes``, ``pretrain-ct`` and
``pretrain-fusion`` from its own synthetic corpora (never a cohort case, never a label; ``pretrained/CARD.md``
names the commands, corpus seeds and held-out figures, and ``tests/models/test_shipped.py`` re-measures them).
Nothing is downloaded: the weights are package data, about 3 MB together (the limit is 25 MB).
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError

PRETRAINED_DIR = Path(__file__).with_name("pretrained")
SHIPPED = ("note_reader", "ct_reader", "fusion_init")
MAX_SHIPPED_BYTES = 25 * 2**20


def shipped(name: str) -> Path:
    """The folder of one shipped model: ``note_reader`` (a ``TextEncoderConfig.path``), ``ct_reader`` (a
    ``CTEncoderConfig.path``) or ``fusion_init`` (a model folder for ``federate --init-model``)."""
    if name not in SHIPPED:
        raise WorkbenchError(f"no shipped model {name!r}: choose one of {', '.join(SHIPPED)}")
    path = PRETRAINED_DIR / name
    if not path.is_dir():
        raise WorkbenchError(f"{path}: the shipped {name} is missing from this installation (reinstall the package, "
                             f"or build one with `workbench pretrain-{name.split('_')[0]}`)")
    return path


def shipped_bytes() -> int:
    """Bytes of every shipped weight and card (a test keeps it under ``MAX_SHIPPED_BYTES``)."""
    return sum(f.stat().st_size for f in PRETRAINED_DIR.rglob("*") if f.is_file())
