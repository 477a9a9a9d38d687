"""End to end: `cuma compare --quick` writes a full report whose table is the numbers in results.json."""

from __future__ import annotations

import json
from itertools import takewhile
from pathlib import Path

import pandas as pd
import pytest

from cuma.adapter import CuMAConfig
from cuma.cli import main
from cuma.compare.cli import DEFAULT_CONFIG
from cuma.compare.report import FLOOR_ROW, TABLE_COLUMNS
from cuma.compare.results import ComparisonResults
from cuma.compare.run import run_comparison
from cuma.config import ExperimentConfig
from cuma.errors import ConfigError
from cuma.models import load_base_model
from cuma.quick import RandomProfileEncoder, quick_config
from cuma.reference_baselines import REFERENCE_BASELINES
from cuma.train.cli import train_method

LLM_METHODS = ["base", "persona", "lora", "lora-matched", "no-demographic", "cuma"]
REFERENCES = list(dict.fromkeys(["logistic", "logistic-pool", *REFERENCE_BASELINES]))  # the config lists two


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "run"
    main(["compare", "--quick", f"output_dir={out}"])
    assert not (out / "train").exists()  # quick checkpoints live in a temporary directory
    return out


@pytest.fixture(scope="module")
def results(report) -> dict:
    return json.loads((report / "results.json").read_text())


def markdown_table(text: str) -> list[list[str]]:
    """Rows of the first Markdown table in ``text`` (header first, separator dropped)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = list(takewhile(lambda line: line.startswith("|"), lines[start:]))
    return [[cell.strip() for cell in line.strip("|").split("|")] for i, line in enumerate(block) if i != 1]


def number(cell: str) -> float | None:
    """A cell's estimate: the number before any ``± std``, ``[interval]`` or mark."""
    return None if cell == "—" else float(cell.split(" ")[0].replace(",", ""))


def test_report_files_exist(report, results):
    for name in ("results.json", "results.csv", "report.md", "report.html", "routing-usage-cuma.csv"):
        assert (report / name).is_file(), name
    assert results["figures"]
    for figure in results["figures"]:
        assert (report / figure["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = " ".join(f["title"] for f in results["figures"])
    assert "EMD" in titles and "entropy" in titles and "cuma: mean routing weight" in titles
    for method in LLM_METHODS + REFERENCES:
        for split in ("test", "heldout"):
            assert (report / "predictions" / f"{method}-seed42-{split}.parquet").is_file()


def test_every_method_and_reference_is_scored_on_both_splits(results):
    assert [run["method"] for run in results["runs"]] == LLM_METHODS + REFERENCES
    sizes = results["data"]["sizes"]
    for run in results["runs"]:
        assert run["metrics"]["test"]["n_answers"] == sizes["test"]
        assert run["metrics"]["heldout"]["n_answers"] == sizes["heldout"]
    params = {run["method"]: run["trainable_params"] for run in results["runs"]}
    assert params["base"] == params["persona"] == 0 and params["lora"] > 0 and params["cuma"] > 0
    assert results["topology"]["cuma"]["experts"] == 8
    assert set(results["timings"]) >= {"load and split data", "cuma seed 42: train", "total"}
    cuma = next(run for run in results["runs"] if run["method"] == "cuma")
    assert -1 <= cuma["gradient_cosine"] <= 1  # the interference diagnostic ran
    assert any(figure["file"] == "figures/interference-cuma.png" for figure in results["figures"])


def test_runs_record_each_methods_resolved_settings(report, results):
    runs = {run["method"]: run for run in results["runs"]}
    expected = CuMAConfig.from_preset("lora", rank=64, alpha=128).settings()  # the default config overrides
    assert runs["lora"]["adapter_config"] == json.loads(json.dumps(expected))
    assert runs["cuma"]["adapter_config"]["demographic_input_dim"] == RandomProfileEncoder().dim
    assert runs["base"]["adapter_config"] is None and runs["majority"]["adapter_config"] is None
    assert runs["cell-majority"]["settings"]["fields"] == ["party", "race"]
    machine = results["machine"]
    line = f"{machine['cpu_count']} CPU cores, {machine['torch_threads']} torch threads, GPU: "
    assert line + (machine["cuda"] or "none") in (report / "report.md").read_text()


def test_markdown_table_matches_results_json(report, results):
    rows = markdown_table((report / "report.md").read_text())
    assert rows[0] == results["table"]["columns"]
    assert rows[1:] == results["table"]["rows"]
    runs = {run["method"]: run for run in results["runs"]}
    evidence = results.get("evidence")
    for row in rows[1:]:
        if row[0] == FLOOR_ROW:
            assert evidence is not None
            continue
        run = runs[row[0]]
        for column, cell in zip(TABLE_COLUMNS, row[1:], strict=True):
            split, _, key = column.key.rpartition(".")
            if column.gain:
                gains = evidence["splits"][split]["gains"][column.gain] if evidence else {}
                value = gains[row[0]][key]["estimate"] if row[0] in gains else None
            else:
                value = run["metrics"].get(split, {}).get(key) if split else run[key]
            if value is None:
                assert cell == "—", (row[0], column.name)
            else:
                assert number(cell) == pytest.approx(value, abs=0.6 * 10**-column.digits), (
                    row[0],
                    column.name,
                )


def test_csv_and_html_carry_the_same_table(report, results):
    csv = pd.read_csv(report / "results.csv").set_index("method")
    for method, entry in results["aggregate"].items():
        accuracy = entry["stats"]["test.accuracy"]["mean"]
        assert csv.loc[method, "test.accuracy_mean"] == pytest.approx(accuracy)
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(results["figures"])
    assert "src='figures/" not in page  # self-contained
    for cell in results["table"]["rows"][0]:
        assert cell in page


def mean(values: pd.Series) -> float | None:
    """The mean of the defined values; None (as in results.json) when there are none."""
    return None if values.dropna().empty else values.mean()


def test_per_question_tables_are_linked_and_average_to_the_reported_means(report, results):
    page = (report / "report.md").read_text()
    for run in results["runs"]:
        for split, metrics in run["metrics"].items():
            path = run["tables"]["distribution"][split]
            assert f"]({path})" in page
            table = pd.read_csv(report / path)
            population = table[table["field"] == "(all)"]
            assert len(population) == metrics["n_questions"]
            assert mean(population["prob_js"]) == pytest.approx(metrics["prob_js_mean"])
            assert mean(population["argmax_emd"]) == pytest.approx(metrics["argmax_emd_mean"])
            groups = table[table["field"] != "(all)"]
            assert mean(groups["argmax_tv"]) == pytest.approx(metrics["argmax_tv_group_mean"])
            entropy = pd.read_csv(report / run["tables"]["entropy"][split])
            assert f"]({run['tables']['entropy'][split]})" in page
            assert entropy["pred_entropy"].mean() == pytest.approx(metrics["pred_entropy_mean"])
            assert entropy["collapsed"].mean() == pytest.approx(metrics["collapse_rate"])


def test_held_out_cells_are_only_in_the_zero_shot_split(report):
    predictions = report / "predictions"
    heldout = pd.read_parquet(predictions / "persona-seed42-heldout.parquet")
    test = pd.read_parquet(predictions / "persona-seed42-test.parquet")
    assert ((heldout["race"] == "black") & (heldout["gender"] == "female")).all()
    assert not ((test["race"] == "black") & (test["gender"] == "female")).any()
    assert not set(heldout["respondent_id"]) & set(test["respondent_id"])


def test_training_changes_the_predictions(report):
    predictions = report / "predictions"
    persona = pd.read_parquet(predictions / "persona-seed42-test.parquet")
    lora = pd.read_parquet(predictions / "lora-seed42-test.parquet")
    assert (persona["respondent_id"] == lora["respondent_id"]).all()
    assert max(abs(a - b).max() for a, b in zip(persona["probs"], lora["probs"], strict=True)) > 1e-4


def test_leftover_checkpoints_stop_a_new_run_before_any_work(tmp_path):
    leftover = tmp_path / "run" / "train" / "cuma-seed42" / "checkpoints" / "step-00000004"
    leftover.mkdir(parents=True)
    (leftover / "trainer_state.json").write_text("{}")
    config = ExperimentConfig.from_yaml(DEFAULT_CONFIG, [f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(FileExistsError, match="step-00000004 is left from an earlier run; pass --resume"):
        run_comparison(config)


def quick_settings(out: Path, *overrides: str) -> ExperimentConfig:
    """The quick config with ``overrides`` on top (as `cuma compare --quick` applies them) into ``out``."""
    config = quick_config(ExperimentConfig.from_yaml(DEFAULT_CONFIG))
    return config.with_overrides([*overrides, f"output_dir={out}"])


@pytest.fixture
def no_model_work(monkeypatch):
    """Make loading the base model or running a method fail the test: checks must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("model work started before the config was checked")

    monkeypatch.setattr("cuma.compare.run.load_base_model", forbidden)
    monkeypatch.setattr("cuma.compare.run.MethodRunner", forbidden)


@pytest.mark.parametrize(
    ("override", "kind", "error"),
    [
        (
            "eval.main_group=shoe_size",
            ValueError,
            r"eval\.main_group names unknown profile fields \['shoe_size'\]",
        ),
        ("eval.cell_fields=[party, planet]", ValueError, r"eval\.cell_fields names unknown profile fields"),
        ("methods=[base, telepathy]", ValueError, "unknown method 'telepathy'"),
        (
            "data.dataset=surveys/missing.yaml",
            FileNotFoundError,
            r"data\.dataset='surveys/missing\.yaml'.*missing",
        ),
        ("adapter_overrides.cuma.top_k=9", ValueError, r"adapter_overrides\.cuma: CuMAConfig\.top_k=9"),
        ("adapter_overrides.cuma.rank=1.5", ValueError, r"adapter_overrides\.cuma\.rank=1\.5: expected int"),
        ("adapter_overrides.prefix.num_virtual_tokens=0", ValueError, r"num_virtual_tokens=0: must be at"),
    ],
)
def test_bad_config_fails_before_any_model_work(tmp_path, no_model_work, override, kind, error):
    config = quick_settings(tmp_path / "run", override)
    with pytest.raises(kind, match=error):
        run_comparison(config, quick=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("data.score_split=train", r"data\.score_split='train': expected 'test' \| 'valid'"),
        ("train.precision=fp16", r"train\.precision='fp16'"),
        ("train.schedule=zigzag", r"train\.schedule='zigzag': expected 'constant' \| .*'cosine'"),
        ("train.warmup_ratio=0.1", r"train\.schedule='constant' ignores warm-up"),
        ("eval.padding_side=middle", r"eval\.padding_side='middle'"),
        ("eval.precision=fp8", r"eval\.precision='fp8'"),
        ("eval.routing_tokens=everything", r"eval\.routing_tokens='everything'"),
        ("train.lr=-1e-3", r"train\.lr=-0\.001: must be a positive finite number"),
        ("seeds=5", r"seeds=5: expected list\[int\]"),
    ],
)
def test_values_a_config_refuses_never_reach_a_comparison(tmp_path, override, error):
    with pytest.raises(ConfigError, match=f"^command-line overrides: {error}"):
        quick_settings(tmp_path / "run", override)


def test_multi_token_option_letters_fail_before_any_method_runs(tmp_path, monkeypatch):
    def load_with_wide_letters(name, dtype=None):
        model, tokenizer = load_base_model(name, dtype=dtype)
        encode = tokenizer.encode
        tokenizer.encode = lambda text, **kwargs: encode(text, **kwargs) * (2 if text == "B" else 1)
        return model, tokenizer

    monkeypatch.setattr("cuma.compare.run.load_base_model", load_with_wide_letters)
    monkeypatch.setattr("cuma.compare.run.MethodRunner", None)  # calling it would be a TypeError
    config = quick_config(ExperimentConfig.from_yaml(DEFAULT_CONFIG, [f"output_dir={tmp_path / 'run'}"]))
    with pytest.raises(
        ValueError, match=r"survey 'gss-spending-2018', question '\w+': option letter is 2 tokens"
    ):
        run_comparison(config, quick=True)


def test_resume_refuses_checkpoints_of_another_base_model_up_front(tmp_path, monkeypatch):
    config = quick_settings(tmp_path / "run", "methods=[lora]", "train.max_steps=1")
    train_method(config, "lora")  # a real checkpoint of tiny-llama in run/train/lora-seed42
    monkeypatch.setattr("cuma.compare.run.MethodRunner", None)
    with pytest.raises(
        ValueError, match=r"model: written for base model .*'model_type': 'llama'.* loads .*'qwen3'"
    ):
        run_comparison(config.with_overrides(["model.name=tiny-qwen3"]), resume=True)


def test_resume_refuses_a_changed_learning_rate_or_data_seed_up_front(tmp_path, monkeypatch):
    config = quick_settings(tmp_path / "run", "methods=[lora]", "train.max_steps=1")
    train_method(config, "lora")
    monkeypatch.setattr("cuma.compare.run.MethodRunner", None)
    with pytest.raises(ValueError, match=r"train\.lr: checkpoint 0\.005, this run 0\.1"):
        run_comparison(config.with_overrides(["train.lr=0.1"]), resume=True)
    with pytest.raises(ValueError, match=r"data\.seed: checkpoint 0, this run 7.*data\.train_sample_sha256"):
        run_comparison(config.with_overrides(["data.seed=7"]), resume=True)


def test_resume_falls_back_from_a_corrupt_newest_checkpoint(tmp_path):
    config = quick_settings(tmp_path / "run", "methods=[lora]", "train.max_steps=2", "train.save_every=1")
    train_method(config, "lora")
    root = tmp_path / "run" / "train" / "lora-seed42" / "checkpoints"
    weights = root / "step-00000002" / "model" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x10  # one flipped bit
    weights.write_bytes(bytes(data))
    result = train_method(config, "lora", resume=True)
    assert result.global_step == 2 and result.checkpoint.name == "step-00000002"
    assert (
        len(result.skipped_checkpoints) == 1 and "adapter_model.safetensors" in result.skipped_checkpoints[0]
    )
    (root / "step-00000001" / "trainer_state.json").write_text("{")  # truncated
    (root / "step-00000002" / "optimizer.json").write_text("")
    with pytest.raises(ValueError, match=r"no valid checkpoint to resume .*trainer_state.json"):
        train_method(config, "lora", resume=True)


def test_validation_scoring_is_labelled_in_the_report(tmp_path, report):
    config = quick_settings(tmp_path / "run", "data.score_split=valid", "methods=[base]")
    out = run_comparison(config, quick=True)
    assert "VALIDATION numbers (data.score_split=valid)" in (out / "report.md").read_text()
    assert "VALIDATION" not in (report / "report.md").read_text()


def test_the_readme_table_script_prints_the_reports_own_numbers(report, results):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "readme_table.py"
    spec = importlib.util.spec_from_file_location("readme_table", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    parsed = ComparisonResults.read(report / "results.json")
    rows = markdown_table(script.table(parsed, "lora", everything=False))
    header, body = rows[0], {row[0]: row for row in rows[1:]}
    test = results["evidence"]["splits"]["test"]
    assert set(body) == set(test["values"]) - {"random-draw", "shuffled-truth", "always-first"}
    column = header.index("Log-loss ↓")
    for method, row in body.items():
        assert number(row[column]) == pytest.approx(test["values"][method]["log_loss"]["estimate"], abs=5e-4)
    shift = header.index("Δ accuracy vs lora")
    expected = test["differences"]["lora"]["cuma"]["accuracy"]["estimate"]
    assert body["lora"][shift] == "—" and number(body["cuma"][shift]) == pytest.approx(expected, abs=5e-4)
    every = markdown_table(script.table(parsed, "lora", everything=True))
    assert {row[0] for row in every[1:]} == set(test["values"])
