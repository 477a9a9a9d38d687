"""precision=auto: bf16 only where it is native, fp32 scoring unless asked, one warning for emulated bf16."""

from __future__ import annotations

import logging

import pytest

from cuma import precision
from cuma.config import EvalConfig, TrainConfig
from cuma.precision import ResolvedPrecision, resolve_precision


@pytest.fixture(autouse=True)
def fresh_caches():
    """Each test sees its own CPU: the per-process caches are cleared before and after."""
    for cached in (precision.bf16_support, precision.bf16_slowdown, precision.warn_emulated_bf16):
        cached.cache_clear()
    yield
    for cached in (precision.bf16_support, precision.bf16_slowdown, precision.warn_emulated_bf16):
        cached.cache_clear()


def fake_cpu(monkeypatch, flags, slowdown=20.0):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(precision, "bf16_slowdown", lambda device_type: slowdown)


def test_auto_is_the_default_of_training_and_scoring():
    assert TrainConfig().precision == "auto" and EvalConfig().precision == "auto"


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_trains_in_bf16_on_a_cpu_with_native_bf16(monkeypatch, flag):
    fake_cpu(monkeypatch, {"avx2", "avx512f", flag})
    assert resolve_precision("auto", "train", "cpu") == ResolvedPrecision("bf16", f"auto: CPU has {flag}")


def test_avx512_without_bf16_units_trains_in_fp32(monkeypatch):
    fake_cpu(monkeypatch, {"avx2", "avx512f", "avx512bw"})
    resolved = resolve_precision("auto", "train", "cpu")
    assert resolved.name == "fp32" and "lacks avx512_bf16 and amx_bf16" in resolved.reason


def test_without_cpu_flags_one_timing_decides(monkeypatch):
    fake_cpu(monkeypatch, None, slowdown=0.4)
    assert resolve_precision("auto", "train", "cpu").name == "bf16"
    precision.bf16_support.cache_clear()
    fake_cpu(monkeypatch, None, slowdown=15.0)
    resolved = resolve_precision("auto", "train", "cpu")
    assert resolved.name == "fp32" and "15.00x the fp32 time" in resolved.reason


def test_auto_scores_in_fp32_even_where_bf16_is_native(monkeypatch):
    fake_cpu(monkeypatch, {"avx512_bf16"})
    resolved = resolve_precision("auto", "eval", "cpu")
    assert resolved.name == "fp32" and "0.05" in resolved.reason
    assert resolve_precision("bf16", "eval", "cpu").name == "bf16"  # asked for: honoured


def test_emulated_bf16_is_allowed_and_warns_once_with_the_slowdown(monkeypatch, caplog):
    fake_cpu(monkeypatch, {"avx2"}, slowdown=19.6)
    with caplog.at_level(logging.WARNING, logger="cuma.precision"):
        first = resolve_precision("bf16", "train", "cpu")
        resolve_precision("bf16", "eval", "cpu")
    assert first.name == "bf16" and first.reason.startswith("asked for")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "19.6x the fp32 time" in warnings[0] and "emulated" in warnings[0]


def test_native_bf16_asked_for_does_not_warn(monkeypatch, caplog):
    fake_cpu(monkeypatch, {"amx_bf16"})
    with caplog.at_level(logging.WARNING, logger="cuma.precision"):
        resolve_precision("bf16", "train", "cpu")
    assert not caplog.records


def test_fp32_is_never_second_guessed(monkeypatch):
    fake_cpu(monkeypatch, {"avx512_bf16"})
    assert resolve_precision("fp32", "train", "cpu") == ResolvedPrecision("fp32", "asked for")


def test_an_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match=r"precision must be one of \('bf16', 'fp32', 'auto'\), got 'fp16'"):
        resolve_precision("fp16", "train", "cpu")


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    monkeypatch.setattr(precision, "CPUINFO", info)
    assert precision.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "absent")
    assert precision.cpu_flags() is None


def test_the_slowdown_is_a_measured_ratio():
    assert precision.bf16_slowdown("cpu", size=64, repeats=1) > 0
