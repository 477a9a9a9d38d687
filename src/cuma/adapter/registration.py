"""Registering CuMA as a PEFT method, so PEFT's own loaders and savers know it.

``peft.utils.register_peft_method`` only accepts names that are members of ``peft.PeftType``, an enum
closed at import time; third-party methods have no other way in (PEFT issue 2273). The ``CUMA`` member
is therefore added to the enum here, the same way ``enum`` itself stores members, and then registered
with PEFT's public function. Both steps are idempotent.

`register` runs when `cuma.adapter` is imported; ``import cuma`` arranges for it to run as soon as
``peft`` is imported (see `cuma.__init__`), so ``AutoPeftModelForCausalLM.from_pretrained(dir)`` finds
CuMA after a plain ``import cuma`` without making ``cuma --help`` pay for importing torch.
"""

from __future__ import annotations

from peft.utils.peft_types import PeftType

PEFT_NAME = "cuma"
PREFIX = "cuma_"


def _extend_peft_type() -> PeftType:
    name = PEFT_NAME.upper()
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    type.__setattr__(PeftType, name, member)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    return member


def register() -> None:
    """Make ``PeftType.CUMA`` and its config/tuner classes known to PEFT (safe to call repeatedly)."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import register_peft_method

    from cuma.adapter.config import CuMAConfig
    from cuma.adapter.model import CuMAModel

    peft_type = _extend_peft_type()
    if peft_type not in PEFT_TYPE_TO_TUNER_MAPPING:
        register_peft_method(name=PEFT_NAME, config_cls=CuMAConfig, model_cls=CuMAModel, prefix=PREFIX)
