"""``cuma serve --quick``: a tiny random CuMA adapter to try the server and the page in seconds.

The adapter sits on the tiny random Llama of `cuma.tiny`, reads profiles rendered with the
WorldValuesBench persona template and encoded by the `cuma.quick.RandomProfileEncoder` stand-in. A
freshly built adapter adds nothing to its base (LoRA B starts at zero), so its trainable weights are
drawn at random here: different profiles then route, and answer, differently. Its text means nothing.
"""

from __future__ import annotations

import torch

from cuma.data.profiles import WVB_PERSONA
from cuma.serve.engine import Engine

QUICK_NAME = "cuma-quick"


def quick_engine(seed: int = 0, name: str = QUICK_NAME) -> Engine:
    from cuma.adapter import CuMAConfig, get_cuma_model
    from cuma.quick import RandomProfileEncoder
    from cuma.tiny import tiny_model, tiny_tokenizer

    encoder = RandomProfileEncoder()
    model = get_cuma_model(
        tiny_model("llama", seed=seed), CuMAConfig.from_preset("cuma", demographic_input_dim=encoder.dim)
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return Engine(model.eval(), tiny_tokenizer(), encoder, WVB_PERSONA, name=name)
