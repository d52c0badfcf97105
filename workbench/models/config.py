"""The whole model's config, the form a file may hold, and the one migration from older saved forms.

A model folder outlives the code and the machine that wrote it, so its ``config.json`` carries a ``version``
and no machine path. Every reader goes through :func:`migrate_model_config`: one place knows every old
layout, and ``ModelConfig.from_dict`` only ever sees the current one.

Versions (``CONFIG_VERSION`` is the current one):

- 0, no ``version`` key: written before versions existed. May lack ``modalities`` (then both),
  ``ct.finding_token`` (then False: saved before the finding token existed) and ``fusion.gate_sum`` (then
  False: saved when the fusion was a convex mix); the defaults the loader used to inject. Holds the absolute
  paths of the machine that trained it: ``ct.path``, ``text.path`` (the pretrained readers the model was
  built from) and ``tokenizer_path``.
- 1: ``version: 1``, every field written, no absolute path. ``ct.path`` and ``text.path`` are null: the
  readers' weights are inside ``model.safetensors`` and the note encoder's architecture in
  ``text_encoder/config.json``, so those folders were needed to build the model, never to load it.
  ``tokenizer_path`` is ``"."``: relative to the model folder, which holds its own tokenizer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.fusion import MODALITIES, FusionConfig
from workbench.models.text_encoder import TextEncoderConfig

CONFIG_VERSION = 1
"""The layout ``save_model`` writes; bump it (and add a step to ``_STEPS``) when a saved field changes meaning."""
HERE = "."
"""``tokenizer_path`` in a saved config: the model folder itself."""


@dataclass
class ModelConfig:
    modalities: tuple[str, ...] = MODALITIES  # which encoders exist: ("ct",), ("notes",) or both
    ct: CTEncoderConfig = field(default_factory=CTEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    tokenizer_path: str | None = None  # where build_model reads the tokenizer; None: the one shipped here
    version: int = CONFIG_VERSION  # the saved layout (module docstring); in memory always the current one

    def to_dict(self) -> dict[str, Any]:
        """Everything, as it is in memory (machine paths included): for this process, not for a file."""
        return asdict(self)

    def to_saved_dict(self) -> dict[str, Any]:
        """What a file may hold (``config.json``, a run's ``train_log.json``): the current version and no machine
        path. The reader folders are dropped (their weights travel in the model file); the tokenizer is the
        model folder's own."""
        saved = replace(self, ct=replace(self.ct, path=None), text=replace(self.text, path=None),
                        tokenizer_path=HERE, version=CONFIG_VERSION)
        return asdict(saved)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """A current-version dict (``migrate_model_config``'s output) -> the config; a missing field gets its
        dataclass default, which is right only for the current version."""
        ct = dict(d.get("ct", {}))
        for k in ("patch_channels", "context_channels"):
            if k in ct:
                ct[k] = tuple(ct[k])
        return cls(modalities=tuple(d.get("modalities", MODALITIES)), ct=CTEncoderConfig(**ct),
                   text=TextEncoderConfig(**d.get("text", {})), fusion=FusionConfig(**d.get("fusion", {})),
                   tokenizer_path=d.get("tokenizer_path"), version=int(d.get("version", CONFIG_VERSION)))


def _v0_to_v1(d: dict[str, Any]) -> dict[str, Any]:
    """Write out the defaults the loader injected into unversioned configs; drop the machine paths."""
    d.setdefault("modalities", list(MODALITIES))
    d.setdefault("ct", {}).setdefault("finding_token", False)
    d.setdefault("fusion", {}).setdefault("gate_sum", False)
    d["ct"]["path"] = None
    d.setdefault("text", {})["path"] = None
    d["tokenizer_path"] = HERE
    return d


_STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1}
"""Version n -> n + 1, one function each; a saved config walks the chain up to CONFIG_VERSION."""


def migrate_model_config(d: dict[str, Any], source: str | Path = "config.json") -> dict[str, Any]:
    """Any saved model config (version 0 up to ``CONFIG_VERSION``) -> the current version's dict.

    The input is left unchanged. ``source`` names the file in errors: a config from a newer workbench, or one
    whose version is not a number, is refused rather than read with fields it would misunderstand.

    Example:
        >>> migrate_model_config({"ct": {}, "fusion": {}})["ct"]["finding_token"]
        False
    """
    if not isinstance(d, dict):
        raise WorkbenchError(f"{source}: not a model config (a JSON object was expected)")
    version = d.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise WorkbenchError(f"{source}: model config version {version!r} is not a version number")
    if version > CONFIG_VERSION:
        raise WorkbenchError(f"{source}: model config version {version} is newer than this workbench reads "
                             f"(up to {CONFIG_VERSION}); update the workbench to load this model")
    out = copy.deepcopy(d)
    while version < CONFIG_VERSION:
        out = _STEPS[version](out)
        version += 1
        out["version"] = version
    return out
