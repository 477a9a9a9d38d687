"""Atomic writes: a write that fails midway leaves the previous file whole, no temporary files, and an
error naming the path it could not write."""

from __future__ import annotations

import dataclasses
import errno
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cuma.atomic import atomic_directory, atomic_path, atomic_write_bytes, atomic_write_text
from cuma.compare.report import write_report
from cuma.compare.results import ComparisonResults
from cuma.data.export import export_examples
from test_compare_results import minimal_results


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def partial_then_full(path: Path, data: bytes = b"half a fi") -> None:
    """What a writer does when the disk fills up: some bytes reach the file, then ENOSPC."""
    path.write_bytes(data)
    disk_full()


def test_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    atomic_write_text(target, "new ≤ text")
    assert target.read_text(encoding="utf-8") == "new ≤ text"
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert target.stat().st_mode == plain.stat().st_mode  # not the 0600 of a bare temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "report.md"]


def test_failure_midway_keeps_the_old_file_and_names_the_path(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old,whole\n")
    error = r"cannot write .*results\.csv: No space left on device"
    with pytest.raises(OSError, match=error) as caught, atomic_path(target) as tmp:
        partial_then_full(tmp)
    assert caught.value.errno == errno.ENOSPC
    assert target.read_text() == "old,whole\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_failed_flush_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    monkeypatch.setattr("cuma.atomic.os.fsync", disk_full)
    with pytest.raises(OSError, match=r"weights\.bin: No space left on device"):
        atomic_write_bytes(target, b"new bytes")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_a_library_error_is_named_with_the_path(tmp_path):
    class SafetensorError(Exception):
        pass

    error = r"cannot write .*model\.safetensors: SafetensorError: Error while"
    with pytest.raises(OSError, match=error), atomic_path(tmp_path / "model.safetensors") as tmp:
        tmp.write_bytes(b"\0" * 10)
        raise SafetensorError("Error while serializing: IoError")
    assert list(tmp_path.iterdir()) == []


def test_the_temporary_path_keeps_the_suffix_libraries_choose_formats_by(tmp_path):
    with atomic_path(tmp_path / "figure.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.exists()
        tmp.write_bytes(b"png")
    assert (tmp_path / "figure.png").read_bytes() == b"png"


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot write .*nowhere/out\.txt: No such file"):
        atomic_write_text(tmp_path / "nowhere" / "out.txt", "x")


def test_interrupt_removes_the_temporary_file_and_is_not_wrapped(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("part")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_directory_is_swapped_whole_or_not_at_all(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.arrow").write_text("old")
    with (
        pytest.raises(OSError, match=r"cannot write .*dataset: No space left"),
        atomic_directory(target) as tmp,
    ):
        partial_then_full(tmp / "new.arrow")
    assert [p.name for p in target.iterdir()] == ["old.arrow"]
    with atomic_directory(target) as tmp:
        (tmp / "new.arrow").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.arrow"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]


def without_figures(title: str) -> ComparisonResults:
    return dataclasses.replace(minimal_results(title), figures=[])


def test_report_is_replaced_only_when_every_file_is_complete(tmp_path, monkeypatch):
    write_report(without_figures("t"), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    results = without_figures("second report")

    write_text = Path.write_text

    def csv_fills_the_disk(self, text, **kwargs):
        if self.name.startswith(".results.csv"):
            partial_then_full(self, b"method,n_se")
        return write_text(self, text, **kwargs)

    monkeypatch.setattr(Path, "write_text", csv_fills_the_disk)
    with pytest.raises(OSError, match=r"cannot write .*results\.csv: No space left on device"):
        write_report(results, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert ComparisonResults.read(tmp_path / "results.json").title == "t"


@dataclass
class Example:
    question_id: str


def test_export_that_fails_midway_keeps_the_previous_export(tmp_path, monkeypatch):
    out = tmp_path / "export"
    out.mkdir()
    (out / "train.jsonl").write_text('{"old": 1}\n')
    records = iter([{"question_id": "q1"}])
    monkeypatch.setattr(
        "cuma.data.export.example_record", lambda ex: next(records) if ex.question_id == "q1" else disk_full()
    )
    with pytest.raises(OSError, match=r"cannot write .*train\.jsonl: No space left on device"):
        export_examples({"train": [Example("q1"), Example("q2")]}, out, "jsonl")
    assert (out / "train.jsonl").read_text() == '{"old": 1}\n'
    assert [p.name for p in out.iterdir()] == ["train.jsonl"]


def test_hf_export_refuses_a_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds other files; the hf format replaces the whole folder"):
        export_examples({"train": [Example("q1")]}, tmp_path, "hf")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
