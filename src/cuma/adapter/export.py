"""Exporting a CuMA adapter as a plain PEFT LoRA, for servers that only know LoRA (vLLM, SGLang, LoRAX).

Exact only where the adapter's weight change does not depend on the token:

* ``routing="none"`` (the ``lora`` preset): the single expert is a LoRA, copied as it is.
* routers that read the profile alone (the ``demographic-only`` preset): for one profile every token of
  every layer gets the same gates g, so the weight change is the fixed matrix ``scaling * sum_e g_e B_e A_e``.
  With a shared A it is ``B' = sum_e g_e B_e`` at rank r; with separate A the selected experts' A and
  gate-scaled B are concatenated, at rank k*r (all N experts under soft routing).

A router that reads the hidden state picks experts per token, so no single LoRA reproduces it; those
presets are refused with that reason instead of exporting an approximation.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors.torch import save_file
from torch import nn

from cuma.adapter.config import CuMAConfig
from cuma.adapter.router import routing_weights

WEIGHTS_NAME = "adapter_model.safetensors"


def check_exportable(config: CuMAConfig) -> None:
    """Refuse adapters whose weight change depends on the token (see the module docstring)."""
    if config.has_router and "hidden" in config.router_inputs:
        raise ValueError(
            f"this adapter (preset {config.preset!r}) routes every token on its hidden state "
            f"(router_inputs={list(config.router_inputs)}), so its weight change differs from token to token "
            "and no single LoRA reproduces it; only adapters routed on the profile alone (demographic-only) "
            "or without a router (lora) can be exported exactly"
        )


@torch.no_grad()
def export_lora(
    model: nn.Module,
    directory: str | Path,
    demographic_embeds: torch.Tensor | None = None,
    adapter_name: str = "default",
) -> Path:
    """Write the plain PEFT LoRA equal to ``model``'s adapter for one profile (``demographic_embeds`` [1, D]).

    ``model`` is a CuMA PEFT model (`cuma.adapter.get_cuma_model` / `load_cuma_model`). Returns the folder.
    """
    config: CuMAConfig = model.peft_config[adapter_name]
    check_exportable(config)
    tuner = model.base_model
    gates = _profile_gates(tuner, config, adapter_name, demographic_embeds)
    tensors: dict[str, torch.Tensor] = {}
    ranks: set[int] = set()
    for name, layer in tuner.layers.items():
        lora_a, lora_b = _layer_lora(layer, config, adapter_name, gates)
        ranks.add(lora_a.shape[0])
        prefix = f"base_model.model.{name}"
        tensors[f"{prefix}.lora_A.weight"] = lora_a.float().contiguous().cpu()
        tensors[f"{prefix}.lora_B.weight"] = lora_b.float().contiguous().cpu()
    (rank,) = ranks  # every layer exports at the same rank
    lora = LoraConfig(
        r=rank,
        lora_alpha=config.scaling * rank,  # PEFT scales by lora_alpha / r: keep CuMA's scaling
        target_modules=list(config.target_modules),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=config.base_model_name_or_path,
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lora.save_pretrained(str(directory))
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def export_profiles(
    model: nn.Module, directory: str | Path, profiles: dict[str, torch.Tensor], adapter_name: str = "default"
) -> Path:
    """One LoRA folder per named profile embedding ([1, D] each) under ``directory``, plus ``index.json``
    mapping each name to its folder, for servers that route requests to adapters by name."""
    directory = Path(directory)
    index = {}
    for name, embeds in profiles.items():
        folder = _folder_name(name)
        export_lora(model, directory / folder, embeds, adapter_name)
        index[name] = folder
    (directory / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return directory


def _folder_name(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.")
    if not safe:
        raise ValueError(f"profile name {name!r} gives no usable folder name")
    return safe


def _profile_gates(
    tuner: nn.Module, config: CuMAConfig, adapter_name: str, demographic_embeds: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Router key -> gates [N] for the profile (empty without a router)."""
    if not config.has_router:
        return {}
    if demographic_embeds is None or demographic_embeds.dim() != 2 or demographic_embeds.shape[0] != 1:
        shape = None if demographic_embeds is None else tuple(demographic_embeds.shape)
        raise ValueError(
            f"exporting a profile-routed adapter needs one profile embedding of shape "
            f"[1, {config.demographic_input_dim}], got {shape}"
        )
    demographic = tuner.cuma_projection[adapter_name](demographic_embeds)
    gates = {}
    for key, router in tuner.cuma_routers[adapter_name].items():
        probe = demographic.new_zeros(1, 1, 1)  # the router reads only the profile; this sets dtype/device
        logits = router(probe, demographic)
        gates[key] = routing_weights(logits, config)[0].reshape(-1)
    return gates


def _layer_lora(
    layer: nn.Module, config: CuMAConfig, adapter_name: str, gates: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A' [rank, in], B' [out, rank]) of one layer; with ``lora_alpha = scaling * rank`` PEFT applies
    ``scaling * B' A'``, which equals the mixture for the profile's gates."""
    lora_a, lora_b = layer.cuma_A[adapter_name], layer.cuma_B[adapter_name]
    router_key = layer.cuma_router_key[adapter_name]
    if router_key is None:
        return lora_a, lora_b
    g, r = gates[router_key], config.rank
    experts = (
        range(config.num_experts) if config.routing == "soft" else g.topk(config.top_k).indices.sort().values
    )
    blocks_b = [g[e].to(lora_b.dtype) * lora_b[:, e * r : (e + 1) * r] for e in map(int, experts)]
    if config.shared_a:
        return lora_a, torch.stack(blocks_b).sum(0)
    blocks_a = [lora_a[e * r : (e + 1) * r] for e in map(int, experts)]
    return torch.cat(blocks_a), torch.cat(blocks_b, dim=1)
