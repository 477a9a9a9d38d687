"""The CuMA adapter: a routed mixture of LoRA experts on any Hugging Face causal LM."""

from cuma.adapter.config import PRESETS, CuMAConfig
from cuma.adapter.layer import MixtureLoRALinear
from cuma.adapter.model import CuMAModel, RoutingRecord, get_cuma_model
from cuma.adapter.projection import DemographicProjection
from cuma.adapter.report import ParameterReport
from cuma.adapter.router import Router, RoutingState

__all__ = [
    "PRESETS",
    "CuMAConfig",
    "CuMAModel",
    "DemographicProjection",
    "MixtureLoRALinear",
    "ParameterReport",
    "Router",
    "RoutingRecord",
    "RoutingState",
    "get_cuma_model",
]
