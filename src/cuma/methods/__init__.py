"""Methods: every baseline and variant is a name in the config (`registry`), built on a base model by
one builder per kind (`builders`) into a `PreparedModel` with one call signature and one save format
(`prepared`)."""

from cuma.adapter.peft_model import base_identity
from cuma.methods.builders import BUILDERS, build_method, load_trained
from cuma.methods.prepared import MethodOutput, PreparedModel
from cuma.methods.registry import (
    METHODS,
    MethodSpec,
    check_methods,
    entry_config,
    get_method,
    method_overrides,
    persona_in_prompt,
    split_entry,
)

__all__ = [
    "BUILDERS",
    "METHODS",
    "MethodOutput",
    "MethodSpec",
    "PreparedModel",
    "base_identity",
    "build_method",
    "check_methods",
    "entry_config",
    "get_method",
    "load_trained",
    "method_overrides",
    "persona_in_prompt",
    "split_entry",
]
