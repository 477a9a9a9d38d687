"""One run per output directory: a second run is refused at once, a stale lock is reported, and a report
directory holding a previous report is refused unless resumed or overwritten (the old files moved aside)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from cuma.compare.cli import DEFAULT_CONFIG
from cuma.compare.run import run_comparison
from cuma.config import ExperimentConfig
from cuma.lock import LOCK_FILE, DirectoryLockedError, OutputLock, StaleLockError, group_lock
from cuma.quick import quick_config


def test_lock_records_the_holder_and_is_released(tmp_path):
    with OutputLock(tmp_path / "run", command="cuma train x.yaml") as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["command"] == "cuma train x.yaml" and holder["started"]
        (tmp_path / "run" / "result.txt").write_text("kept")
    assert not lock.path.exists()
    assert (tmp_path / "run" / "result.txt").read_text() == "kept"


def test_second_lock_is_refused_at_once_naming_the_holder(tmp_path):
    with OutputLock(tmp_path, command="first run"):
        with pytest.raises(DirectoryLockedError) as refused, OutputLock(tmp_path):
            pass
        message = str(refused.value)
        assert str(tmp_path) in message and f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert "started 20" in message and "'first run'" in message
        assert (tmp_path / LOCK_FILE).exists()  # the refused one did not remove the holder's lock
    assert not (tmp_path / LOCK_FILE).exists()


HOLD = textwrap.dedent(
    """
    import sys
    from cuma.lock import OutputLock
    with OutputLock(sys.argv[1], command="holder"):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)
TRY = textwrap.dedent(
    """
    import sys
    from cuma.lock import DirectoryLockedError, OutputLock
    try:
        with OutputLock(sys.argv[1]):
            print("got the lock")
    except DirectoryLockedError as err:
        print(err)
        sys.exit(3)
    """
)


def test_a_second_process_is_refused_while_the_first_holds_the_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with (
            pytest.raises(DirectoryLockedError, match=rf"pid {holder.pid} on .*'holder'"),
            OutputLock(tmp_path),
        ):
            pass
        other = subprocess.run(
            [sys.executable, "-c", TRY, str(tmp_path)], capture_output=True, text=True, timeout=120
        )
        assert other.returncode == 3 and f"in use by another cuma run (pid {holder.pid}" in other.stdout
    finally:
        holder.communicate("done\n", timeout=120)
    assert holder.returncode == 0 and not (tmp_path / LOCK_FILE).exists()
    with OutputLock(tmp_path):  # free again
        pass


def test_a_holder_killed_with_sigkill_leaves_a_stale_lock_that_is_reported(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "locked\n"
    holder.kill()
    holder.communicate(timeout=120)
    stale = (
        rf"stale lock from a run that is no longer running \(pid {holder.pid} .*remove {tmp_path / LOCK_FILE}"
    )
    with pytest.raises(StaleLockError, match=stale), OutputLock(tmp_path):
        pass
    assert (tmp_path / LOCK_FILE).exists()  # reported, not broken


def test_an_output_directory_that_is_a_file_is_named(tmp_path):
    (tmp_path / "out").write_text("x")
    with (
        pytest.raises(NotADirectoryError, match=r"output directory .*out is a file"),
        OutputLock(tmp_path / "out"),
    ):
        pass


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_lock_of_a_dead_process_is_reported_not_broken(tmp_path):
    lock = tmp_path / LOCK_FILE
    holder = {
        "pid": dead_pid(),
        "host": socket.gethostname(),
        "started": "2024-01-01T00:00:00",
        "command": "x",
    }
    lock.write_text(json.dumps(holder))
    stale = rf"stale lock .*pid {holder['pid']}.*remove {lock} if no run"
    with pytest.raises(StaleLockError, match=stale), OutputLock(tmp_path):
        pass
    assert json.loads(lock.read_text()) == holder


def test_lock_of_another_host_is_not_judged_from_here(tmp_path):
    holder = {"pid": dead_pid(), "host": "elsewhere", "started": "2024-01-01T00:00:00", "command": "x"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(holder))
    busy = r"in use by another cuma run .*on elsewhere"
    with pytest.raises(DirectoryLockedError, match=busy) as refused, OutputLock(tmp_path):
        pass
    assert not isinstance(refused.value, StaleLockError)


def test_unreadable_lock_file_is_refused(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")
    with (
        pytest.raises(DirectoryLockedError, match=r"cannot be read.*Remove .*\.cuma\.lock"),
        OutputLock(tmp_path),
    ):
        pass


def test_lock_is_released_on_an_exception_and_an_empty_new_directory_removed(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), OutputLock(tmp_path / "new"):
        raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError, match="boom"), OutputLock(tmp_path):
        raise RuntimeError("boom")
    assert tmp_path.exists() and not (tmp_path / LOCK_FILE).exists()


def test_only_the_main_process_takes_the_lock(tmp_path):
    with OutputLock(tmp_path, main_process=False), OutputLock(tmp_path, main_process=False):
        assert not (tmp_path / LOCK_FILE).exists()


def test_group_lock_prepares_under_the_lock_and_releases_it_when_preparing_fails(tmp_path):
    seen = []
    with group_lock(tmp_path, lambda: seen.append((tmp_path / LOCK_FILE).exists())):
        assert (tmp_path / LOCK_FILE).exists()
    assert seen == [True] and not (tmp_path / LOCK_FILE).exists()

    def refuse():
        raise FileExistsError("previous report")

    with pytest.raises(FileExistsError, match="previous report"), group_lock(tmp_path, refuse):
        pass
    assert not (tmp_path / LOCK_FILE).exists()


def quick_settings(out, *overrides: str) -> ExperimentConfig:
    config = quick_config(ExperimentConfig.from_yaml(DEFAULT_CONFIG))
    return config.with_overrides([*overrides, f"output_dir={out}"])


@pytest.fixture
def no_model_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("model work started before the output directory was checked")

    monkeypatch.setattr("cuma.compare.run.load_base_model", forbidden)
    monkeypatch.setattr("cuma.compare.run.prepare_data", forbidden)


def test_compare_into_a_locked_directory_is_refused_before_any_work(tmp_path, no_model_work):
    busy = r"run is in use by another cuma run"
    with (
        OutputLock(tmp_path / "run", command="cuma compare"),
        pytest.raises(DirectoryLockedError, match=busy),
    ):
        run_comparison(quick_settings(tmp_path / "run", "methods=[base]"), quick=True)


def old_report(out) -> None:
    """What an earlier comparison with more methods leaves: a report and a method's predictions."""
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "lora-seed42-test.parquet").write_bytes(b"old")
    (out / "results.json").write_text('{"title": "old"}')
    (out / "notes.txt").write_text("mine")


def test_compare_refuses_a_previous_report_without_resume_or_overwrite(tmp_path, no_model_work):
    out = tmp_path / "run"
    old_report(out)
    with pytest.raises(
        FileExistsError, match=r"run holds a previous report \(predictions, results\.json\); "
    ):
        run_comparison(quick_settings(out, "methods=[base]"), quick=True)
    with pytest.raises(ValueError, match="choose one"):
        run_comparison(quick_settings(out, "methods=[base]"), quick=True, resume=True, overwrite=True)
    assert (out / "results.json").read_text() == '{"title": "old"}' and not (out / LOCK_FILE).exists()


def test_overwrite_moves_the_old_report_aside_so_no_stale_file_stays(tmp_path):
    out = tmp_path / "run"
    old_report(out)
    run_comparison(quick_settings(out, "methods=[base]"), quick=True, overwrite=True)
    assert json.loads((out / "results.json").read_text())["title"].startswith("CuMA comparison")
    predictions = sorted(p.name for p in (out / "predictions").iterdir())
    assert predictions and not [name for name in predictions if name.startswith("lora")]
    assert (out / "notes.txt").read_text() == "mine"  # not a file a comparison writes
    assert not (out / LOCK_FILE).exists()
    (aside,) = tmp_path.glob("run.old-*")
    assert (aside / "predictions" / "lora-seed42-test.parquet").read_bytes() == b"old"
    assert json.loads((aside / "results.json").read_text()) == {"title": "old"}
