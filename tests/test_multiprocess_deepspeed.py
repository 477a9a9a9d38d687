"""DeepSpeed ZeRO-2 and ZeRO-3 on CPU: two processes train what one process without DeepSpeed trains (fp32),
and a resume from a mid-run ZeRO checkpoint (gathered float32 weights, optimizer state gathered by
parameter name and partitioned again, cuma/train/zero_state.py) ends where the uninterrupted run ends
(fp32 and bf16).

accelerate picks DeepSpeed only for GPU-like devices (on CPU its state stays ``MULTI_CPU``, as for FSDP:
tests/test_multiprocess_fsdp2.py). DeepSpeed itself runs on CPU (its CPU accelerator, on gloo), and so does
accelerate's DeepSpeed code once the state says DEEPSPEED; so this file, run as a script under
``torchrun`` (``__main__`` below), starts DeepSpeed's communication on the process group accelerate formed
and sets the state to DEEPSPEED with the plugin accelerate builds from the ``ACCELERATE_DEEPSPEED_*``
environment, as ``accelerate launch`` would on a GPU machine, and then runs ``cuma train``.

Also here, without DeepSpeed installed: `configure_zero`, which makes accelerate's DeepSpeed config agree
with the trainer or refuses it before any training, and the refusal of a comparison under ZeRO-3.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from cuma.config import TrainConfig
from cuma.errors import ConfigError
from cuma.preflight import check_comparison_launch
from cuma.train.zero_state import configure_zero
from gather_probe import gathered_counts, report_gathered

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gss-cuma.yaml"
MARK = "deepspeed zero stage"
needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason="the deepspeed extra is not installed"
)


def _train(out: Path, processes: int, stage: int | None, *extra: str) -> str:
    """Run ``cuma train`` for CuMA (through this file's ``__main__``); returns its standard output. The
    run goes to ``out/train/cuma[-OBJECTIVE]-seed42``."""
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    env.update(OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    if stage is not None:
        env.update(ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_ZERO_STAGE=str(stage))
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [
        sys.executable, *launcher, __file__, "train", "--config", str(CONFIG), "--method", "cuma", "--quick",
        f"output_dir={out}", "train.max_steps=2", "train.batch_size=2", f"train.grad_accum={3 - processes}",
        "adapter_overrides.cuma.dropout=0.0", "train.save_every=1", "train.keep_checkpoints=null", *extra,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _weights(out: Path, step: int, run: str = "cuma-seed42") -> dict[str, torch.Tensor]:
    (weights,) = (out / "train" / run / "checkpoints" / f"step-{step:08d}" / "model").glob("*.safetensors")
    return load_file(weights)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("one")
    assert MARK not in _train(out, 1, None)
    return _weights(out, 2)


@needs_deepspeed
@pytest.mark.parametrize(("stage", "precision"), [(2, "fp32"), (3, "fp32"), (2, "bf16")])
def test_zero_trains_what_one_process_does_and_resumes_exactly(
    tmp_path: Path, stage: int, precision: str, request: pytest.FixtureRequest
) -> None:
    """In bf16 DeepSpeed computes in a module cast to bf16 where one process autocasts, so only the
    resume is compared; its checkpoints hold the float32 master weights, and a resume restores them."""
    two = _train(tmp_path, 2, stage, f"train.precision={precision}")
    assert f"{MARK} {stage}" in two  # DeepSpeed really ran, at this stage
    if stage == 3:
        assert "partitioned over 2" in two  # ZeRO-3: each process held half of each adapter weight
    zero = _weights(tmp_path, 2)
    assert {tensor.dtype for tensor in zero.values()} == {torch.float32}
    # Each save gathered the adapter alone (its saved tensors), never the frozen base.
    assert gathered_counts(two) == [sum(t.numel() for t in zero.values())] * 2
    if precision == "fp32":
        one_process = request.getfixturevalue("one_process")
        assert zero.keys() == one_process.keys()
        assert any(tensor.abs().sum() > 0 for name, tensor in one_process.items() if "_B" in name)
        for name in one_process:
            torch.testing.assert_close(zero[name], one_process[name], rtol=1e-5, atol=1e-5, msg=name)

    # Stop after step 1's checkpoint: resume it under the same stage and finish step 2 again.
    root = tmp_path / "train" / "cuma-seed42" / "checkpoints"
    assert '"keys": "name"' in (root / "step-00000001" / "optimizer.json").read_text()
    for path in sorted((root / "step-00000002").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "step-00000002").rmdir()
    _train(tmp_path, 2, stage, f"train.precision={precision}", "--resume")
    resumed = _weights(tmp_path, 2)
    for name in zero:
        assert torch.equal(resumed[name], zero[name]), name


@needs_deepspeed
def test_grpo_rollouts_under_zero3_train_what_zero2_trains(tmp_path: Path) -> None:
    """GRPO generates outside the engine's forward, where ZeRO-3 would leave the router's weights
    partitioned; with them gathered for the rollout (cuma/train/zero_state.py) the same two processes
    sample the same answers and train the same adapter as under ZeRO-2, which keeps whole weights."""
    grpo = ["train.objective=grpo", "grpo.num_generations=2"]
    runs = {stage: _weights(_run_dir(tmp_path, stage, grpo), 2, "cuma-grpo-seed42") for stage in (2, 3)}
    assert any(tensor.abs().sum() > 0 for name, tensor in runs[2].items() if "_B" in name)
    for name in runs[2]:
        torch.testing.assert_close(runs[3][name], runs[2][name], rtol=1e-5, atol=1e-5, msg=name)


def _run_dir(root: Path, stage: int, extra: list[str]) -> Path:
    out = root / f"zero{stage}"
    assert f"{MARK} {stage}" in _train(out, 2, stage, *extra)
    return out


@pytest.mark.parametrize(("stage", "refused"), [("3", True), ("2", False)])
def test_a_comparison_under_zero3_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, refused: bool
) -> None:
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", stage)
    if refused:
        with pytest.raises(ConfigError, match="cuma compare under DeepSpeed ZeRO-3 is not supported"):
            check_comparison_launch()
    else:
        check_comparison_launch()
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    check_comparison_launch()  # not a DeepSpeed launch


def _plugin(**config: object) -> SimpleNamespace:
    return SimpleNamespace(deepspeed_config=dict(config))


def test_configure_zero_fills_autos_from_the_trainer_and_refuses_disagreement() -> None:
    train = TrainConfig(max_grad_norm=0.5)
    plugin = _plugin(gradient_clipping="auto", zero_optimization={"stage": 3})
    configure_zero(plugin, train)
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == 1
    with pytest.raises(ConfigError, match=r"gradient_clipping=1\.0 but train\.max_grad_norm=0\.5"):
        configure_zero(_plugin(gradient_clipping=1.0), train)
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=4; cuma accumulates"):
        configure_zero(_plugin(gradient_accumulation_steps=4), train)


def _deepspeed_state_on_cpu() -> None:
    """After each ``Accelerator`` is built, start DeepSpeed's communication on its process group and make
    its state DEEPSPEED with the plugin accelerate reads from the environment; after ``prepare``, report
    the ZeRO stage and (ZeRO-3) over how many processes an adapter weight is partitioned."""
    import deepspeed
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    built, prepare = Accelerator.__init__, Accelerator.prepare

    def init(self: Accelerator, *args: object, **kwargs: object) -> None:
        built(self, *args, **kwargs)
        deepspeed.comm.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
        for shared in (PartialState._shared_state, AcceleratorState._shared_state):
            shared["distributed_type"] = DistributedType.DEEPSPEED
        plugin = DeepSpeedPlugin()
        plugin.set_mixed_precision(AcceleratorState._shared_state["_mixed_precision"])
        plugin.select(_from_accelerator_state=True)
        AcceleratorState._shared_state["deepspeed_plugins"] = plugin

    def prepared(self: Accelerator, *args: object) -> tuple:
        out = prepare(self, *args)
        engine = out[0]
        if self.is_main_process:
            print(f"{MARK} {engine.zero_optimization_stage()}", flush=True)
            trainable = next(p for p in engine.module.parameters() if p.requires_grad)
            if hasattr(trainable, "ds_tensor"):  # a ZeRO-3 parameter: its own data is empty
                print(f"partitioned over {trainable.ds_numel // trainable.ds_tensor.numel()}", flush=True)
        return out

    Accelerator.__init__, Accelerator.prepare = init, prepared


if __name__ == "__main__":
    from cuma.cli import main

    if os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true":
        _deepspeed_state_on_cpu()
        report_gathered()
    main(sys.argv[1:])
