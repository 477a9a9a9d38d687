"""Trainable projection of the raw frozen-encoder profile embedding, applied on every call.

It lives in the CuMAModel rather than behind the encoder's cache so that it gets a gradient every time
a profile is seen; the authors' code detached it after a profile's first appearance (see docs/design.md).
"""

from __future__ import annotations

import torch
from torch import nn

from cuma.adapter.config import CuMAConfig


class DemographicProjection(nn.Module):
    """0 layers: identity; 1: Linear(in, out); 2: Linear(in, out), GELU, Linear(out, out)."""

    def __init__(self, config: CuMAConfig) -> None:
        super().__init__()
        self.input_dim = config.demographic_input_dim
        self.output_dim = config.projected_demographic_dim
        layers: list[nn.Module] = []
        if config.demographic_projection_layers >= 1:
            layers.append(nn.Linear(self.input_dim, self.output_dim))
        if config.demographic_projection_layers == 2:
            layers += [nn.GELU(), nn.Linear(self.output_dim, self.output_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        if embeds.dim() != 2 or embeds.shape[1] != self.input_dim:
            raise ValueError(
                f"demographic_embeds must have shape [batch, {self.input_dim}] "
                f"(CuMAConfig.demographic_input_dim), got {tuple(embeds.shape)}"
            )
        if not embeds.is_floating_point():
            raise TypeError(f"demographic_embeds must be a float tensor, got {embeds.dtype}")
        if not len(self.net):
            return embeds
        weight = self.net[0].weight
        return self.net(embeds.to(device=weight.device, dtype=weight.dtype))
