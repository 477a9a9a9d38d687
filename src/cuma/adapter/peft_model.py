"""Building, saving and loading CuMA adapters as PEFT models.

``get_cuma_model`` returns a `CuMAPeftModel`: a ``peft.PeftModelForCausalLM`` that also writes a model
card describing the adapter and a ``cuma.json`` sidecar (base model identity, cuma version, sha256 of
the weights) next to PEFT's ``adapter_config.json`` and ``adapter_model.safetensors``. PEFT ignores the
sidecar, so ``PeftModel.from_pretrained(base, dir)`` loads the folder as it is; `load_cuma_model` reads
the same folder strictly: the weights must match the recorded checksum, the base model must be of the
recorded type and size, and every tensor must be present with the right shape.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from peft import PeftModelForCausalLM
from peft.utils import SAFETENSORS_WEIGHTS_NAME, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from cuma.adapter.card import cuma_card_section
from cuma.adapter.config import CuMAConfig
from cuma.adapter.registration import register
from cuma.sidecar import SIDECAR_NAME, read_sidecar, write_sidecar

CONFIG_NAME = "adapter_config.json"


class CuMAPeftModel(PeftModelForCausalLM):
    """``PeftModelForCausalLM`` whose saved folder also carries the CuMA model card and sidecar.

    ``training_record`` (a JSON-ready mapping: data, steps, metrics) is written into the model card when set.
    """

    training_record: dict[str, Any] | None = None

    def save_pretrained(
        self, save_directory: str, *args: Any, is_main_process: bool = True, **kwargs: Any
    ) -> None:
        # CuMA never adapts the embeddings; "auto" would look the base model up on the hub to find out.
        kwargs.setdefault("save_embedding_layers", False)
        super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        if not is_main_process:
            return
        selected = kwargs.get("selected_adapters") or list(self.peft_config)
        for name in selected:
            folder = Path(save_directory) if name == "default" else Path(save_directory) / name
            write_sidecar(
                folder, {"base_model": base_identity(self.get_base_model())}, [SAFETENSORS_WEIGHTS_NAME]
            )

    def create_or_update_model_card(self, output_dir: str) -> None:
        super().create_or_update_model_card(output_dir)
        card = Path(output_dir) / "README.md"
        text = card.read_text(encoding="utf-8")
        section = cuma_card_section(self.peft_config[self.active_adapter], self.training_record)
        marker = "## CuMA adapter"
        kept = text[: text.index(marker)] if marker in text else text  # saving again replaces the section
        card.write_text(kept.rstrip() + "\n\n" + section, encoding="utf-8")


def get_cuma_model(base_model: nn.Module, config: CuMAConfig, adapter_name: str = "default") -> CuMAPeftModel:
    """Freeze ``base_model`` and add the adapter that ``config`` describes (modifies it in place)."""
    register()
    if any(type(m).__name__ == "MixtureLoRALinear" for m in base_model.modules()):
        raise ValueError("base_model already carries CuMA layers; pass a fresh base model")
    if getattr(config, "base_model_name_or_path", None) is None:
        config.base_model_name_or_path = getattr(base_model, "name_or_path", None)
    if hasattr(base_model, "add_model_tags"):
        base_model.add_model_tags(["cuma"])
    return CuMAPeftModel(base_model, config, adapter_name)


def load_cuma_model(
    base_model: nn.Module, directory: str | Path, *, adapter_name: str = "default", is_trainable: bool = False
) -> CuMAPeftModel:
    """Rebuild a saved adapter on ``base_model``, validating the folder, the base model and every tensor."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / SAFETENSORS_WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"no {path.name} in {directory}; expected a saved CuMA adapter folder")
    config = read_config(directory)
    _check_sidecar(directory, base_model)
    try:
        tensors = load_file(weights_path)
    except SafetensorError as err:
        raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from err
    config.inference_mode = not is_trainable
    model = get_cuma_model(base_model, config, adapter_name)
    load_adapter_tensors(model, tensors, str(weights_path), adapter_name)
    if not is_trainable:
        model.eval()
    return model


def load_adapter_tensors(model: nn.Module, tensors: dict, source: str, adapter_name: str = "default") -> None:
    """Copy a saved adapter state dict into a PEFT model after checking that names and shapes match
    exactly (PEFT itself only warns); every problem is listed."""
    expected = get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False)
    problems = tensor_problems({k: v.shape for k, v in expected.items()}, tensors)
    if problems:
        raise ValueError(f"{source} does not fit this adapter; " + "; ".join(problems))
    set_peft_model_state_dict(model, tensors, adapter_name=adapter_name)


def tensor_problems(
    expected: dict[str, torch.Size],
    tensors: dict[str, torch.Tensor],
    ignore_missing: frozenset[str] = frozenset(),
) -> list[str]:
    """Every way ``tensors`` fail to match the ``expected`` names and shapes, one entry per kind."""
    missing = sorted(set(expected) - set(tensors) - ignore_missing)
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = [
        f"{k}: {tuple(tensors[k].shape)} (expected {tuple(expected[k])})"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k]
    ]
    listed = (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
    return [f"{label}: {keys[:6]}" for label, keys in listed if keys]


def read_config(directory: str | Path) -> CuMAConfig:
    """The `CuMAConfig` saved in ``directory``, with a clear error for another PEFT method or a bad file."""
    register()
    path = Path(directory) / CONFIG_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable adapter config: {err}") from None
    if raw.get("peft_type") != "CUMA":
        raise ValueError(f"{path} describes a {raw.get('peft_type')!r} PEFT adapter, not a CuMA adapter")
    known = {key: value for key, value in raw.items() if key in CuMAConfig.__dataclass_fields__}
    try:
        return CuMAConfig(**known)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid CuMA adapter config: {err}") from None


def base_identity(base_model: nn.Module) -> dict[str, Any]:
    """What the base model is; saved folders and checkpoints record it, so another base can be refused."""
    config = base_model.config
    return {
        "name_or_path": str(getattr(config, "name_or_path", "") or getattr(base_model, "name_or_path", "")),
        "model_type": config.model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_parameters": sum(p.numel() for p in base_model.parameters()),
    }


def _check_sidecar(directory: Path, base_model: nn.Module) -> None:
    if not (directory / SIDECAR_NAME).is_file():
        warnings.warn(
            f"{directory} has no {SIDECAR_NAME} (not saved by cuma): weights and base model unchecked",
            stacklevel=3,
        )
        return
    saved = read_sidecar(directory)["base_model"]  # also checks the weights against their sha256
    current = base_identity(base_model)
    if (saved["model_type"], saved["hidden_size"]) != (current["model_type"], current["hidden_size"]):
        raise ValueError(
            f"{directory / SIDECAR_NAME}: the adapter was saved for base model {saved['name_or_path']!r} "
            f"(model_type={saved['model_type']!r}, hidden_size={saved['hidden_size']}), but the given base "
            f"model is {current['name_or_path']!r} (model_type={current['model_type']!r}, "
            f"hidden_size={current['hidden_size']})"
        )
    if saved["name_or_path"] != current["name_or_path"]:
        warnings.warn(
            f"{directory / SIDECAR_NAME}: saved for base model {saved['name_or_path']!r}; loading it on "
            f"{current['name_or_path']!r}",
            stacklevel=3,
        )
