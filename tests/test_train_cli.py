"""``cuma train``: the method comes from --method or method=NAME, and a quick run leaves a checkpoint."""

import subprocess
import sys

import pytest
from accelerate.state import AcceleratorState

from cuma.cli import main
from cuma.config import ExperimentConfig
from cuma.errors import CumaError
from cuma.methods import load_trained
from cuma.models import load_base_model
from cuma.train import list_checkpoints
from cuma.train.cli import load_config, split_method, train_method


def test_method_from_flag_or_override():
    assert split_method("cuma", ["train.lr=1e-4"]) == ("cuma", ["train.lr=1e-4"])
    assert split_method(None, ["method=lora", "train.lr=1e-4"]) == ("lora", ["train.lr=1e-4"])
    for flag, overrides in ((None, []), ("cuma", ["method=lora"])):
        with pytest.raises(CumaError, match="give the method once"):
            split_method(flag, overrides)


def test_help_does_not_import_torch():
    """``cuma --help`` builds every sub-command's parser; loading torch for that took seconds."""
    probe = "import sys; from cuma.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_unknown_or_untrainable_method_stops_before_loading_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("cuma.models.load_base_model", None)  # calling it would be a TypeError: status 1
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path}\n")
    for argv, message in [
        (["--method", "kuma"], "unknown method 'kuma'"),
        (["method=persona"], "method 'persona' has nothing to train"),
        (
            ["--method", "cuma", "adapter_overrides.cuma.top_k=9"],
            r"adapter_overrides.cuma: CuMAConfig.top_k=9",
        ),
    ]:
        with pytest.raises(SystemExit) as done:
            main(["train", "--config", str(config), *argv])
        assert done.value.code == 2
        assert capsys.readouterr().err.startswith(f"cuma: error: {message}")


def test_leftover_checkpoints_stop_a_new_run_before_loading_anything(tmp_path, monkeypatch):
    monkeypatch.setattr("cuma.models.load_base_model", None)
    leftover = tmp_path / "train" / "lora-seed42" / "checkpoints" / "step-00000002"
    leftover.mkdir(parents=True)
    (leftover / "trainer_state.json").write_text("{}")
    config = ExperimentConfig(output_dir=str(tmp_path))
    with pytest.raises(FileExistsError, match="step-00000002 is left from an earlier run; pass --resume"):
        train_method(config, "lora")


def test_overrides_apply_on_top_of_quick(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"output_dir: {tmp_path / 'run'}\n")
    config = load_config(path, ["train.max_steps=2", "adapter_overrides.lora.rank=2"], quick=True)
    assert (config.train.max_steps, config.model.name) == (2, "tiny-llama")
    assert config.adapter_overrides == {"lora": {"rank": 2}}
    assert config.output_dir == f"{tmp_path / 'run'}-quick"


def test_quick_run_writes_a_loadable_checkpoint(tmp_path):
    AcceleratorState._reset_state(reset_partial_state=True)
    config = tmp_path / "c.yaml"
    out = tmp_path / "run"
    config.write_text(f"data: {{dataset: gss-spending-2018, heldout_cells: {{}}}}\noutput_dir: {out}\n")
    main(["train", "--config", str(config), "--quick", "--method", "lora", "train.max_steps=2"])
    run_dir = out.with_name("run-quick") / "train" / "lora-seed42"
    newest = list_checkpoints(run_dir / "checkpoints")[-1]
    assert newest.name == "step-00000002"  # the override, not --quick's 4 steps
    base, _ = load_base_model("tiny-llama")
    assert load_trained(newest / "model", base).name == "lora"
