"""``cuma train``: the method comes from --method or method=NAME, and a quick run leaves a checkpoint."""

import pytest
from accelerate.state import AcceleratorState

from cuma.cli import main
from cuma.config import ExperimentConfig
from cuma.methods import load_trained
from cuma.models import load_base_model
from cuma.train import list_checkpoints
from cuma.train.cli import split_method


def test_method_from_flag_or_override():
    assert split_method("cuma", ["train.lr=1e-4"]) == ("cuma", ["train.lr=1e-4"])
    assert split_method(None, ["method=lora", "train.lr=1e-4"]) == ("lora", ["train.lr=1e-4"])
    for flag, overrides in ((None, []), ("cuma", ["method=lora"])):
        with pytest.raises(SystemExit, match="give the method once"):
            split_method(flag, overrides)


def test_unknown_or_untrainable_method_stops_before_loading_anything(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path}\n")
    with pytest.raises(ValueError, match="unknown method 'kuma'"):
        main(["train", "--config", str(config), "--method", "kuma"])
    with pytest.raises(SystemExit, match="nothing to train"):
        main(["train", "--config", str(config), "method=persona"])


def test_quick_run_writes_a_loadable_checkpoint(tmp_path):
    AcceleratorState._reset_state(reset_partial_state=True)
    config = tmp_path / "c.yaml"
    config.write_text("data: {dataset: gss-spending-2018, heldout_cells: {}}\n")
    out = tmp_path / "run"
    main(["train", "--config", str(config), "--quick", "--method", "lora", f"output_dir={out}"])
    run_dir = out.with_name("run-quick") / "train" / "lora-seed42"
    newest = list_checkpoints(run_dir / "checkpoints")[-1]
    base, _ = load_base_model("tiny-llama")
    assert load_trained(newest, base, ExperimentConfig()).name == "lora"
