"""``cuma interference``: how a trained (or freshly built) adapter's group gradients align.

    cuma interference --config configs/gss-cuma.yaml --model runs/gss/train/cuma-seed42 --field party
    cuma interference --config configs/gss-cuma.yaml --method lora --field party --quick

The training examples are those of ``cuma compare`` and ``cuma train`` (``data.*`` of the config and its
overrides), shown with or without the persona as the method was trained. ``--model`` loads a saved method
(`cuma.methods.load_trained`, on the config's ``model.name``; a profile-routed adapter with the encoder it
records), ``--method`` builds one as at the start of training. It prints the cosines and writes
``<out>/<method>-<field>.png`` (`cuma.evaluation.interference_plot`) and ``.json``
(`cuma.evaluation.interference.GradientInterference.to_dict`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cuma.atomic import atomic_write_text
from cuma.errors import CumaError
from cuma.train.cli import load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="experiment YAML (see configs/)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="a saved method's folder (cuma train / cuma compare)")
    which.add_argument("--method", help="build this adapter method fresh, as before training")
    parser.add_argument("--field", required=True, help="the profile field whose values are the groups")
    parser.add_argument("--per-group", type=int, default=64, help="training examples per group (default 64)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per forward pass (default 8)")
    parser.add_argument(
        "--out", type=Path, help="where the figure and JSON go (default <output_dir>/interference)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the config's --quick settings (tiny random model)"
    )
    parser.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    config = load_config(args.config, args.overrides, quick=args.quick)
    if args.model is not None and not (args.model / "cuma.json").is_file():
        raise CumaError(
            f"--model {args.model}: no cuma.json there; give a folder saved by cuma train or compare"
        )
    from cuma.data.experiment import prepare_data
    from cuma.encoder import encoder_for_adapter, make_encoder
    from cuma.evaluation.interference import gradient_interference
    from cuma.evaluation.interference_plot import plot_interference
    from cuma.methods import build_method, load_trained
    from cuma.models import load_base_model

    data = prepare_data(config.data)
    base, tokenizer = load_base_model(config.model.name, dtype=config.model.dtype)
    if args.model is not None:
        prepared = load_trained(args.model, base)
        encoder = encoder_for_adapter(args.model) if prepared.uses_demographics else None
    else:
        encoder = make_encoder(config.model)
        prepared = build_method(args.method, base, config, encoder=encoder)
    if prepared.uses_demographics:
        data = data.with_embeddings(encoder)
    result = gradient_interference(
        prepared,
        tokenizer,
        data.examples("train", prepared.persona_in_prompt),
        args.field,
        per_group=args.per_group,
        batch_size=args.batch_size,
        max_length=config.data.max_length,
        seed=config.data.seed,
    )
    out = args.out or Path(config.output_dir) / "interference"
    stem = f"{prepared.name}-{args.field}"
    figure = plot_interference(result, out / f"{stem}.png")
    atomic_write_text(out / f"{stem}.json", json.dumps(result.to_dict(), indent=2) + "\n")
    print(f"{prepared.name}: gradient cosines by {args.field} over {result.parameters:,} LoRA weights")
    for i, (group, n) in enumerate(zip(result.groups, result.examples, strict=True)):
        cosines = " ".join(f"{c:+.2f}" for c in result.cosine[i])
        print(f"  {i:>2} {cosines}  {group} ({n} examples)")
    print(f"mean off-diagonal cosine: {result.mean_cosine:+.3f}")
    if result.expert_mean_cosine is not None:
        print("per expert: " + ", ".join(f"{e}: {m:+.3f}" for e, m in enumerate(result.expert_mean_cosine)))
    print(f"figure: {figure}")
