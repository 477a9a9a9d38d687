"""The verdict cache file: append-only, survives an interrupted write, refuses a corrupt line."""

import logging
import re

import pytest

from cuma.judges import Verdict, VerdictCache


def test_verdicts_persist_and_an_interrupted_last_line_is_dropped(tmp_path, caplog) -> None:
    path = tmp_path / "cache.jsonl"
    cache = VerdictCache(path)
    cache.put("k1", Verdict("a", "[[A]]"))
    cache.put("k2", Verdict("tie", {"probs": {"A": 0.5}}))
    with path.open("a") as handle:
        handle.write('{"key": "k3", "choi')  # a run killed mid-write
    with caplog.at_level(logging.WARNING):
        reread = VerdictCache(path)
    assert "incomplete last line" in caplog.text
    assert len(reread) == 2 and reread.get("k2") == Verdict("tie", {"probs": {"A": 0.5}})
    reread.put("k3", Verdict("b", "[[B]]"))
    assert VerdictCache(path).get("k3") == Verdict("b", "[[B]]") and len(VerdictCache(path)) == 3


def test_a_corrupt_line_is_an_error_naming_file_and_line(tmp_path) -> None:
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "k1", "choice": "a", "raw": null}\n{"key": "k2", "choice": "maybe"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}: line 2 is not a cached verdict")):
        VerdictCache(path)


def test_failures_are_not_cached() -> None:
    with pytest.raises(ValueError, match="failed verdicts are not cached"):
        VerdictCache().put("k", Verdict.failure("timeout"))
