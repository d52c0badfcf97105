"""Models: CT encoder, note encoder, modality-gated fusion. Knows no trainer and no cohort truth."""

from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.fusion import MODALITIES, FusionConfig, FusionOutput
from workbench.models.model import (
    ModelConfig,
    NoduleRiskModel,
    build_model,
    load_model,
    save_model,
    trainable_parameters,
)
from workbench.models.text_encoder import TextEncoderConfig

__all__ = ["MODALITIES", "CTEncoderConfig", "FusionConfig", "FusionOutput", "ModelConfig", "NoduleRiskModel",
           "TextEncoderConfig", "build_model", "load_model", "save_model", "trainable_parameters"]
