"""``cuma export``: a saved CuMA adapter as plain PEFT LoRA folders, for multi-LoRA servers (vLLM, SGLang).

    cuma export runs/x/train/lora-seed42/checkpoints/step-00000060/model --out lora/
    cuma export ADAPTER_DIR --profile '{"country": "Nigeria", "age": "18-29"}' --out nigeria/
    cuma export ADAPTER_DIR --profiles profiles.json --out per-profile/   # {"name": {profile}, ...}

Exact only for adapters without a router (``lora``) or routed on the profile alone
(``demographic-only``); for token-routed presets the command says why no LoRA can reproduce them
(`cuma.adapter.export`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cuma.errors import CumaError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "adapter", type=Path, help="a saved CuMA adapter folder (adapter_config.json, cuma.json)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write (one folder per profile)")
    parser.add_argument("--base", help="base model to load (default: the one the adapter was saved for)")
    profiles = parser.add_mutually_exclusive_group()
    profiles.add_argument("--profile", help="one profile: a JSON mapping of field -> value, or a sentence")
    profiles.add_argument("--profiles", type=Path, help="a JSON file mapping names to profiles")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    from cuma.adapter import load_cuma_model, read_config
    from cuma.adapter.export import check_exportable, export_lora, export_profiles
    from cuma.models import load_base_model

    config = read_config(args.adapter)
    check_exportable(config)  # before loading any model
    profiles = _profiles(args)
    if config.has_router and not profiles:
        raise CumaError(f"{args.adapter} routes on the profile: give --profile or --profiles")
    if not config.has_router and profiles:
        raise CumaError(
            f"{args.adapter} has no router: its LoRA is the same for every profile; drop --profile"
        )
    base, _ = load_base_model(args.base or config.base_model_name_or_path)
    model = load_cuma_model(base, args.adapter)
    if not profiles:
        print(f"wrote {export_lora(model, args.out)}")
        return
    from cuma.encoder import encoder_for_adapter

    encoder = encoder_for_adapter(args.adapter)
    embeds = {name: encoder.encode([profile]) for name, profile in profiles.items()}
    if args.profile is not None:
        print(f"wrote {export_lora(model, args.out, embeds['profile'])}")
    else:
        print(f"wrote {len(embeds)} adapters and an index to {export_profiles(model, args.out, embeds)}")


def _profiles(args: argparse.Namespace) -> dict[str, Any]:
    if args.profile is not None:
        return {"profile": _profile(args.profile, "--profile")}
    if args.profiles is None:
        return {}
    try:
        raw = json.loads(args.profiles.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CumaError(f"{args.profiles}: not a readable JSON file of profiles: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise CumaError(f"{args.profiles}: expected a non-empty JSON object mapping names to profiles")
    return {str(name): _profile(value, f"{args.profiles}: {name}") for name, value in raw.items()}


def _profile(value: Any, where: str) -> dict[str, Any] | str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value  # a ready profile sentence
    if isinstance(value, dict) and value:
        return value
    if isinstance(value, str) and value.strip():
        return value
    raise CumaError(
        f"{where}: a profile is a non-empty mapping of field -> value or a sentence, got {value!r}"
    )
