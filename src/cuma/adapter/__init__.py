"""The CuMA adapter: a routed mixture of LoRA experts on any Hugging Face causal LM, as a PEFT method."""

from cuma.adapter.registration import register

register()

from cuma.adapter.config import PRESETS, CuMAConfig  # noqa: E402
from cuma.adapter.layer import MixtureLoRALinear  # noqa: E402
from cuma.adapter.model import CuMACausalLMOutput, CuMAModel, RoutingRecord  # noqa: E402
from cuma.adapter.peft_model import CuMAPeftModel, get_cuma_model, load_cuma_model, read_config  # noqa: E402
from cuma.adapter.projection import DemographicProjection  # noqa: E402
from cuma.adapter.report import ParameterReport  # noqa: E402
from cuma.adapter.router import Router, RoutingState  # noqa: E402

__all__ = [
    "PRESETS",
    "CuMACausalLMOutput",
    "CuMAConfig",
    "CuMAModel",
    "CuMAPeftModel",
    "DemographicProjection",
    "MixtureLoRALinear",
    "ParameterReport",
    "Router",
    "RoutingRecord",
    "RoutingState",
    "get_cuma_model",
    "load_cuma_model",
    "read_config",
]
