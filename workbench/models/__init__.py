"""Models: CT encoder, note encoder, modality-gated fusion. Knows no trainer and no cohort truth."""

from workbench.models.config import CONFIG_VERSION, ModelConfig, migrate_model_config
from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.fusion import MODALITIES, FusionConfig, FusionOutput
from workbench.models.model import (
    NoduleRiskModel,
    build_model,
    load_model,
    read_model_config,
    save_model,
    trainable_parameters,
)
from workbench.models.text_encoder import TextEncoderConfig

__all__ = ["CONFIG_VERSION", "MODALITIES", "CTEncoderConfig", "FusionConfig", "FusionOutput", "ModelConfig",
           "NoduleRiskModel", "TextEncoderConfig", "build_model", "load_model", "migrate_model_config",
           "read_model_config", "save_model", "trainable_parameters"]
