"""`cuma demo` end to end on the real SmolLM2 model, and its command-line wiring."""

import re

import pytest

from cuma import demo
from cuma.cli import build_parser
from cuma.data.profiles import KEY_VALUE


def test_cli_wires_the_demo_options():
    args = build_parser().parse_args(
        ["demo", "--model", "tiny-llama", "--seed", "3", "--max-new-tokens", "5"]
    )
    assert args.func is demo.run
    assert (args.model, args.encoder, args.seed, args.max_new_tokens) == (
        "tiny-llama",
        "all-MiniLM-L6-v2",
        3,
        5,
    )


@pytest.mark.slow
def test_demo_runs_on_the_real_model(smollm2_gguf, capsys):
    demo.main(seed=0, max_new_tokens=8)
    out = capsys.readouterr().out
    for profile in demo.DEMO_PROFILES.values():
        assert KEY_VALUE.render(profile) in out
    table = {
        line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["experts"], ["routers"])
    }
    assert set(table) == {"experts", "routers"}
    assert all(int(line.split()[1].replace(",", "")) > 0 for line in table.values())
    routing_rows = [line for line in out.splitlines() if re.match(r"model\.layers\.\d+\.self_attn ", line)]
    assert len(routing_rows) == 30, "one row per block: q_proj and v_proj share a router"
    assert all(len(re.findall(r"e\d \d\.\d\d", row)) == 4 for row in routing_rows), "top-2 for each profile"
    options = re.findall(
        r"^  (profile A|profile B|base model) +A (\S+)  B (\S+)  C (\S+)  D (\S+)$", out, re.M
    )
    assert [row[0] for row in options] == ["profile A", "profile B", "base model"]
    assert all(sum(map(float, row[1:])) == pytest.approx(1, abs=2e-3) for row in options)
    assert "Answer for profile A:" in out and "Answer for profile B:" in out
    assert "noise" in out, "the demo says that the expert weights were randomised"
