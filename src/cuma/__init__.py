"""CuMA: culturally pluralistic alignment with a demographic-aware mixture of LoRA adapters."""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CuMAConfig": "cuma.adapter.config",
    "CuMAModel": "cuma.adapter.model",
    "get_cuma_model": "cuma.adapter.model",
    "DemographicEncoder": "cuma.encoder",
    "load_base_model": "cuma.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    # Lazy so that `import cuma` (and the CLI's start-up) does not import torch and transformers.
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cuma' has no attribute {name!r}")
