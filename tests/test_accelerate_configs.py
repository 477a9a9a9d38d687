"""configs/accelerate/*.yaml: each loads as `accelerate launch` loads it, down to the plugin it configures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from cuma.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"
EXPECTED = {
    "single-gpu.yaml": DistributedType.NO,
    "ddp.yaml": DistributedType.MULTI_GPU,
    "fsdp2.yaml": DistributedType.FSDP,
    "zero2.yaml": DistributedType.DEEPSPEED,
    "zero3.yaml": DistributedType.DEEPSPEED,
    "multi-node.yaml": DistributedType.MULTI_GPU,
}


def launch_env(path: Path) -> tuple[Any, dict[str, str]]:
    """The launcher's arguments and the environment it gives each process, without launching."""
    parser = launch_command_parser()
    args, defaults, _ = _validate_launch_command(
        parser.parse_args(["--config_file", str(path), "-m", "cuma", "train"])
    )
    if args.use_deepspeed:  # what launch_command sets before it calls the DeepSpeed launcher
        fields = [*defaults.deepspeed_config, "mixed_precision"]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args) if args.multi_gpu or args.use_fsdp else {}


def test_every_shipped_file_is_checked() -> None:
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loads_with_accelerates_config_classes_and_only_known_options(name: str) -> None:
    config = load_config_from_file(str(CONFIGS / name))
    assert isinstance(config, ClusterConfig) and config.distributed_type == EXPECTED[name]
    assert config.mixed_precision == "bf16"
    known = {action.dest for action in launch_command_parser()._actions}
    nested = [f"fsdp_{k}" if not k.startswith("fsdp_") else k for k in config.fsdp_config]
    nested += list(config.deepspeed_config)
    assert set(nested) <= known, f"{name}: options accelerate launch does not know: {set(nested) - known}"


def test_fsdp2_shards_fully_and_gathers_full_state_dicts() -> None:
    _, env = launch_env(CONFIGS / "fsdp2.yaml")
    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
    assert plugin.use_orig_params is None  # FSDP2 always trains the original parameters


@pytest.mark.parametrize(("name", "stage"), [("zero2.yaml", 2), ("zero3.yaml", 3)])
def test_deepspeed_stage_and_clipping_match_the_paper_config(name: str, stage: int) -> None:
    _, env = launch_env(CONFIGS / name)
    with mock.patch.dict(os.environ, env):
        plugin = DeepSpeedPlugin()
    paper = ExperimentConfig.from_yaml(ROOT / "configs" / "wvb-qwen3-8b-paper.yaml")
    assert plugin.zero_stage == stage
    assert plugin.deepspeed_config["gradient_clipping"] == paper.train.max_grad_norm
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == 1  # cuma's trainer accumulates
    # cuma's checkpoints gather the adapter alone, never the whole model in 16 bits.
    gathers = plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert gathers is False and plugin.zero3_init_flag is False


def test_multi_node_counts_every_gpu_of_every_machine() -> None:
    args, _ = launch_env(CONFIGS / "multi-node.yaml")
    assert args.num_machines == 2 and args.num_processes % args.num_machines == 0
    assert args.main_process_ip and args.main_process_port


def test_scale_out_doc_shows_a_launch_for_every_file() -> None:
    doc = (ROOT / "docs" / "scale-out.md").read_text()
    for name in EXPECTED:
        assert f"--config_file configs/accelerate/{name}" in doc
    assert "torchrun --nproc_per_node 2 -m cuma" in doc
