"""The CuMA section of an adapter's model card (README.md), written next to PEFT's own card text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cuma.adapter.config import CuMAConfig


def cuma_card_section(config: CuMAConfig, training: Mapping[str, Any] | None = None) -> str:
    """Markdown describing how the adapter routes, which encoder and template build its inputs, how to
    load it, and (when known) what it was trained on and how it scored."""
    encoder = config.encoder or {}
    lines = [
        "## CuMA adapter",
        "",
        "A demographic-aware mixture of LoRA experts (CuMA, arXiv 2601.04885), trained with `cuma`.",
        "",
        f"- Preset: `{config.preset or 'custom'}`; {config.num_experts} expert(s) of rank {config.rank} "
        f"(alpha {config.alpha}), routing `{config.routing}`"
        + (f", top-{config.top_k}" if config.top_k else "")
        + f", router inputs {list(config.router_inputs) or 'none'}, on {list(config.target_modules)}",
        f"- Base model: `{config.base_model_name_or_path}`",
    ]
    if config.uses_demographics:
        lines.append(
            f"- Demographic encoder: `{encoder.get('name_or_path', 'unknown')}` (pooling "
            f"{encoder.get('pooling', '?')}, max_length {encoder.get('max_length', '?')}, normalize "
            f"{encoder.get('normalize', '?')}, dim {config.demographic_input_dim})"
        )
        if config.profile_template:
            lines.append(f"- Profile template: `{json.dumps(config.profile_template)}`")
    lines += [
        "",
        "Load it (after `import cuma`, which registers the method with PEFT):",
        "",
        "```python",
        "import cuma",
        "from peft import AutoPeftModelForCausalLM",
        "model = AutoPeftModelForCausalLM.from_pretrained(ADAPTER_DIR)",
    ]
    if config.uses_demographics:
        lines += [
            "encoder = cuma.DemographicEncoder.from_adapter(ADAPTER_DIR)",
            'embeds = encoder.encode([{"country": "Nigeria", "age": "18-29"}])',
            "out = model.generate(**inputs, demographic_embeds=embeds)",
        ]
    lines.append("```")
    if training:
        lines += ["", "### Training", ""]
        lines += [f"- {key}: {value}" for key, value in training.items()]
    return "\n".join(lines) + "\n"
