"""`cuma data list | show | export`."""

import json
from pathlib import Path

import pytest

from cuma.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def test_list_names_every_dataset(capsys):
    main(["data", "list"])
    out = capsys.readouterr().out
    for name in ("gss-spending-2018", "gss-abortion", "ess-immigration", "worldvaluesbench", "prism"):
        assert name in out
    assert "community-alignment" in out


def test_show_survey_by_field(capsys):
    main(["data", "show", "gss-spending-2018", "--by", "gender", "--questions", "1"])
    out = capsys.readouterr().out
    assert "2347 respondents, 18 questions" in out
    assert "natspac: 3 options, codes -1..1 (ordinal)" in out
    assert "[user] Are we spending too much" in out
    assert "answer shares, natspac by gender" in out and "A. Too little" in out


def test_show_spec_file_and_chat_data(capsys):
    main(["data", "show", str(FIXTURES / "survey" / "toy.yaml"), "--persona"])
    out = capsys.readouterr().out
    assert "[system] You are a person from Norway" in out
    main(["data", "show", "prism", "--path", str(FIXTURES / "prism")])
    out = capsys.readouterr().out
    assert "25 SFT rows" in out and "[system] User Profile: Country:" in out
    with pytest.raises(SystemExit) as done:
        main(["data", "show", "gss-spending-2018", "--by", "planet"])
    assert done.value.code == 2
    assert "cuma: error: --by 'planet': no such profile field" in capsys.readouterr().err


def test_export_jsonl_and_hf(tmp_path):
    main(["data", "export", str(FIXTURES / "survey" / "toy.yaml"), "--out", str(tmp_path / "j")])
    rows = [json.loads(line) for line in (tmp_path / "j" / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 19
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": rows[0]["target_letter"]}
    assert rows[0]["option_codes"] == [1, 2, 3]
    main(
        [
            "data",
            "export",
            "community-alignment",
            "--path",
            str(FIXTURES / "community_alignment"),
            "--split",
            "conversation",
            "--format",
            "hf",
            "--out",
            str(tmp_path / "hf"),
        ]
    )
    from datasets import load_from_disk

    saved = load_from_disk(str(tmp_path / "hf"))
    assert {"sft_train", "dpo_train", "choice_test"} <= set(saved)
    train = {r["conversation_id"] for r in saved["sft_train"]}
    assert not train & {r["question_id"] for r in saved["choice_test"]}
