"""CuMA: culturally pluralistic alignment with a demographic-aware mixture of LoRA adapters.

``import cuma`` registers CuMA as a PEFT method (`cuma.adapter.registration`), so PEFT's own loaders
(``PeftModel.from_pretrained``, ``AutoPeftModelForCausalLM.from_pretrained``) read CuMA adapter folders.
Registration needs ``peft``, which imports torch; to keep ``cuma --help`` fast it happens right after
``peft`` is first imported (at once if it already is), through a one-shot import hook.
"""

import importlib.abc
import importlib.util
import sys
from importlib import import_module
from types import ModuleType
from typing import Any

from cuma.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "CuMAConfig": "cuma.adapter",
    "CuMAModel": "cuma.adapter",
    "get_cuma_model": "cuma.adapter",
    "load_cuma_model": "cuma.adapter",
    "DemographicEncoder": "cuma.encoder",
    "load_base_model": "cuma.models",
}

__all__ = ["__version__", *_EXPORTS]

# Lazy so that `import cuma` (and the CLI's start-up) does not import torch and transformers.
__getattr__ = lazy_exports("cuma", _EXPORTS)


class _RegisterWithPeft(importlib.abc.MetaPathFinder):
    """Runs `cuma.adapter.registration.register` once ``peft`` has been imported, then leaves."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "peft":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module: ModuleType) -> None:
            exec_module(module)
            import_module("cuma.adapter")

        spec.loader.exec_module = exec_and_register
        return spec


if "peft" in sys.modules:
    import_module("cuma.adapter")
elif not any(isinstance(finder, _RegisterWithPeft) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithPeft())
