"""``cuma train``: fine-tune one method on a survey's training split and keep its checkpoints.

    cuma train --config configs/gss-cuma.yaml --method cuma train.lr=1e-4 train.max_steps=100
    cuma train --config configs/gss-cuma.yaml method=lora --resume
    cuma train --config configs/gss-preference-offline.yaml --method cuma@dpo   # after --method cuma

The method is ``--method NAME`` or, equivalently, a ``method=NAME`` item among the overrides. It reads as
the same entry of ``cuma compare``'s ``methods``: ``NAME`` trains ``train.objective``, ``NAME@dpo`` DPO,
each at ``method_lr``'s rate for that entry. The other overrides are the dotted ``section.field=value``
pairs of `cuma.config`; as in ``cuma compare`` they apply on top of ``--quick``, so ``--quick
train.max_steps=2`` runs two steps. The data split and sample are those of ``cuma compare`` (``data.*``),
and the run goes to ``<output_dir>/train/<method>-seed<train.seed>`` (``<method>-dpo-seed...`` for DPO),
where ``cuma compare --resume`` finds it too.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cuma.config import ExperimentConfig, config_help
from cuma.errors import CumaError

if TYPE_CHECKING:
    from cuma.train.trainer import TrainResult

logger = logging.getLogger("cuma.train")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="experiment YAML (see configs/)")
    parser.add_argument(
        "--method",
        help="method to train (see cuma.methods.METHODS), NAME@dpo or NAME@grpo for a preference objective, "
        "or override method=NAME",
    )
    add_run_arguments(parser, "the same run on a tiny random model and a small sample (seconds)")
    parser.set_defaults(func=main)


def add_run_arguments(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """The options `cuma train` and `cuma compare` share: --quick, --resume, --resume-changed, the
    overrides, and the generated list of config fields."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoints of this run"
    )
    parser.add_argument(
        "--resume-changed",
        action="append",
        default=[],
        metavar="FIELD",
        help="a setting (e.g. data.n_train) a --resume may change on purpose, once per setting; any other "
        "change is an error",
    )
    parser.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides")
    parser.epilog = config_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def main(args: argparse.Namespace) -> None:
    method, overrides = split_method(args.method, args.overrides)
    config = load_config(args.config, overrides, quick=args.quick)
    from cuma.processes import log_from_main_process

    main_process = log_from_main_process()
    result = train_method(config, method, resume=args.resume, changed=args.resume_changed)
    if not main_process:
        return
    print(f"{method}: {result.global_step} steps, final loss {result.final_loss:.4f}")
    for problem in result.skipped_checkpoints:
        print(f"skipped: {problem}")
    for key, (before, now) in result.changed_on_resume.items():
        print(f"changed on resume (allowed): {key} {before!r} -> {now!r}")
    print(f"model: {result.model_dir} (load it with cuma.methods.load_trained)")


def split_method(flag: str | None, overrides: list[str]) -> tuple[str, list[str]]:
    """The method from ``--method`` or a ``method=NAME`` override (not both), and the other overrides."""
    named = [item.partition("=")[2] for item in overrides if item.startswith("method=")]
    rest = [item for item in overrides if not item.startswith("method=")]
    candidates = ([flag] if flag else []) + named
    if len(candidates) != 1:
        raise CumaError(f"give the method once, as --method NAME or method=NAME (got {candidates})")
    return candidates[0], rest


def load_config(path: Path, overrides: list[str], quick: bool = False) -> ExperimentConfig:
    """The YAML, then ``--quick``'s settings, then the overrides: what the user types always wins.

    ``cuma compare`` loads its config with this too, before importing torch, so a bad value fails fast.
    """
    config = ExperimentConfig.from_yaml(path)
    if quick:
        from cuma.quick import quick_config

        config = quick_config(config)
    return config.with_overrides(overrides)


def train_method(
    config: ExperimentConfig, method: str, resume: bool = False, changed: Sequence[str] = ()
) -> TrainResult:
    """Load data, model and encoder as ``cuma compare`` does, build ``method`` (a ``methods`` entry:
    ``NAME`` under ``train.objective`` or ``NAME@OBJECTIVE``) and train it at its ``method_lr`` rate when
    the config gives one."""
    from cuma.data.experiment import prepare_data
    from cuma.encoder import make_encoder
    from cuma.methods import entry_config, get_method
    from cuma.models import load_base_model
    from cuma.preflight import check_no_checkpoints, check_settings
    from cuma.processes import process_state
    from cuma.train.layout import run_identity, train_dir
    from cuma.train.recipe import starting_method, training_recipe
    from cuma.train.trainer import CHECKPOINT_DIR, train

    check_settings(config, [method])
    # The entry resolves as the same entry of cuma compare's ``methods`` does (its objective, its
    # ``method_lr`` rate), so a comparison can resume this run.
    name, config = entry_config(method, config)
    if not get_method(name).trainable:
        raise CumaError(f"method {name!r} has nothing to train; evaluate it with cuma compare")
    out = train_dir(Path(config.output_dir) / "train", name, config.train.seed, config.train.objective)
    if not resume:
        check_no_checkpoints(out / CHECKPOINT_DIR)
    data = prepare_data(config.data)
    base, tokenizer = load_base_model(config.model.name, dtype=config.model.dtype)
    encoder = make_encoder(config.model)
    prepared = starting_method(config, name, base, encoder, out.parent)
    logger.info("%s: trainable parameters\n%s", method, prepared.parameter_report())
    if prepared.uses_demographics:
        data = data.with_embeddings(encoder)
    recipe = training_recipe(config, data, tokenizer, prepared, process_state().device)
    identity = run_identity(config, name, data.examples("train", prepared.persona_in_prompt))
    return train(
        prepared,
        recipe.dataset,
        recipe.collate_fn,
        config.objective_train,
        out,
        objective=recipe.objective,
        resume=resume,
        run_identity=identity,
        allow_changed=changed,
    )
