"""``cuma export`` on folders ``cuma train --quick`` wrote: plain LoRA out, token-routed presets refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from peft import PeftModel

from cuma.cli import main
from cuma.methods import load_trained
from cuma.models import load_base_model
from cuma.quick import RandomProfileEncoder
from cuma.train import list_checkpoints


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one-line error ``cuma`` ends with (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def trained(tmp_path: Path, method: str) -> Path:
    AcceleratorState._reset_state(reset_partial_state=True)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{dataset: gss-spending-2018, heldout_cells: {{}}}}\noutput_dir: {tmp_path / 'run'}\n"
    )
    main(["train", "--config", str(config), "--quick", "--method", method, "train.max_steps=2"])
    runs = tmp_path / "run-quick" / "train" / f"{method}-seed42" / "checkpoints"
    return list_checkpoints(runs)[-1] / "model"


def test_lora_exports_without_a_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = trained(tmp_path, "lora")
    main(["export", str(model_dir), "--out", str(tmp_path / "out")])
    ids = torch.randint(4, 500, (2, 7), generator=torch.Generator().manual_seed(0))
    ours = load_trained(model_dir)(ids).logits
    plain = PeftModel.from_pretrained(load_base_model("tiny-llama")[0], tmp_path / "out")
    torch.testing.assert_close(plain(input_ids=ids).logits, ours, rtol=1e-5, atol=1e-5)
    argv = ["export", str(model_dir), "--out", str(tmp_path / "x"), "--profile", '{"party": "Democrat"}']
    assert "has no router" in refused(capsys, argv)


def test_demographic_only_exports_one_folder_per_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = trained(tmp_path, "demographic-only")
    profiles = {"dem": {"party": "Democrat"}, "rep": {"party": "Republican"}}
    (tmp_path / "p.json").write_text(json.dumps(profiles))
    main(["export", str(model_dir), "--out", str(tmp_path / "out"), "--profiles", str(tmp_path / "p.json")])
    assert json.loads((tmp_path / "out" / "index.json").read_text()) == {"dem": "dem", "rep": "rep"}
    ids = torch.randint(4, 500, (1, 7), generator=torch.Generator().manual_seed(0))
    embeds = RandomProfileEncoder().encode([profiles["dem"]])
    ours = load_trained(model_dir)(ids, demographic_embeds=embeds).logits
    plain = PeftModel.from_pretrained(load_base_model("tiny-llama")[0], tmp_path / "out" / "dem")
    torch.testing.assert_close(plain(input_ids=ids).logits, ours, rtol=1e-5, atol=1e-5)
    assert "give --profile or --profiles" in refused(
        capsys, ["export", str(model_dir), "--out", str(tmp_path / "y")]
    )


def test_token_routed_adapter_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = trained(tmp_path, "cuma")
    capsys.readouterr()  # the training run's progress bars
    message = refused(
        capsys, ["export", str(model_dir), "--out", str(tmp_path / "out"), "--profile", "a Democrat"]
    )
    assert message.startswith("cuma: error: ") and "routes every token on its hidden state" in message
