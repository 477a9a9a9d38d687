"""The command line's errors: one ``cuma: error:`` line, status 2, for user errors; bugs show a traceback."""

import os
import subprocess
import sys

import pytest

from cuma.cli import main
from cuma.data.errors import DataError
from cuma.errors import ConfigError, CumaError


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"output_dir: {tmp_path / 'run'}\n")
    return path


@pytest.fixture
def no_model_work(monkeypatch):
    """Running a comparison or a training run fails the test: config errors must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("model work started before the config was checked")

    monkeypatch.setattr("cuma.compare.run.run_comparison", forbidden)
    monkeypatch.setattr("cuma.train.cli.train_method", forbidden)


def run_main(argv, capsys):
    """``cuma.cli.main(argv)``'s exit status and stderr lines."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    return done.value.code, capsys.readouterr().err.splitlines()


def test_a_bad_override_is_one_line_and_status_2_without_importing_torch():
    probe = (
        "import sys\nfrom cuma.cli import main\n"
        "try:\n    main(['compare', 'train.lr=-1'])\n"
        "except SystemExit as done:\n    print(done.code, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "False"]
    assert done.stderr == (
        "cuma: error: command-line overrides: train.lr=-1: must be a positive finite number\n"
    )


def test_python_m_cuma_exits_2_with_the_message(config_file):
    command = [sys.executable, "-m", "cuma", "train", "--config", str(config_file), "--method", "lora"]
    done = subprocess.run([*command, "seeds=[a,b]"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "cuma: error: command-line overrides: seeds=['a', 'b']: expected list[int]\n"
    env = {**os.environ, "CUMA_DEBUG": "1"}
    debug = subprocess.run([*command, "seeds=5"], capture_output=True, text=True, env=env)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == "cuma: error: command-line overrides: seeds=5: expected list[int]"


@pytest.mark.parametrize("command", ["compare", "train"])
@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.lr=-0.001", "train.lr=-0.001"),
        ("train.max_steps=1.5", "train.max_steps=1.5"),
        ("seeds=5", "seeds=5"),
        ("seeds=[a,b]", "seeds=['a', 'b']"),
        ("train.lr=[1,2]", "train.lr=[1, 2]"),
        ("data.n_train=-5", "data.n_train=-5"),
    ],
)
def test_bad_values_stop_before_any_model_work(config_file, no_model_work, capsys, command, override, named):
    argv = [command, "--config", str(config_file), *(["method=lora"] if command == "train" else []), override]
    code, err = run_main(argv, capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"cuma: error: command-line overrides: {named}: ")


def test_a_bad_value_in_the_file_names_the_file(tmp_path, no_model_work, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: .nan\n")
    code, err = run_main(["compare", "--config", str(path)], capsys)
    assert (code, err) == (2, [f"cuma: error: {path}: train.lr=nan: must be a positive finite number"])


def test_file_errors_and_multi_line_messages_are_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    code, err = run_main(["compare", "--config", str(missing)], capsys)
    assert (code, err) == (2, [f"cuma: error: config file not found: {missing}"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1,\n")
    code, err = run_main(["compare", "--config", str(broken)], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"cuma: error: {broken}: not valid YAML")


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("train.lr=-1: must be a positive finite number", "configs/x.yaml"),
        DataError("unknown code", source="survey.csv", row=3),
        FileExistsError("runs/x is in use"),
        ModuleNotFoundError("train.report_to lists tensorboard, which is not installed"),
        FloatingPointError("step 3: the loss is nan"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_user_errors_are_one_line_unless_debugging(config_file, monkeypatch, capsys, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("cuma.train.cli.train_method", fail)
    argv = ["train", "--config", str(config_file), "--method", "lora"]
    assert run_main(argv, capsys) == (2, [f"cuma: error: {error}"])
    code, err = run_main(["--debug", *argv], capsys)
    assert code == 2 and err[0] == "Traceback (most recent call last):" and err[-1] == f"cuma: error: {error}"
    monkeypatch.setenv("CUMA_DEBUG", "1")
    code, err = run_main(argv, capsys)
    assert code == 2 and "Traceback (most recent call last):" in err


def test_an_internal_error_shows_its_traceback_and_asks_for_a_report(config_file, monkeypatch, capsys):
    def bug(*args, **kwargs):
        raise KeyError("respondent_id")

    monkeypatch.setattr("cuma.train.cli.train_method", bug)
    code, err = run_main(["train", "--config", str(config_file), "--method", "lora"], capsys)
    assert code == 1
    assert err[0] == "Traceback (most recent call last):" and "KeyError: 'respondent_id'" in err
    assert "bug in cuma" in err[-1] and "report" in err[-1]


def test_ctrl_c_is_reported_as_interrupted(config_file, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cuma.train.cli.train_method", interrupted)
    assert run_main(["train", "--config", str(config_file), "--method", "lora"], capsys) == (
        130,
        ["cuma: interrupted"],
    )


def test_usage_errors_stay_argparse_errors(capsys):
    code, err = run_main(["compare", "--no-such-option"], capsys)
    assert code == 2 and err[0].startswith("usage: cuma ") and "unrecognized arguments" in err[-1]


def test_data_errors_are_user_errors():
    assert issubclass(DataError, CumaError) and issubclass(DataError, ValueError)
    assert issubclass(ConfigError, CumaError) and issubclass(ConfigError, ValueError)
