"""``cuma compare`` scores under ``data.option_order=both`` in the fixed and the reversed order and
averages the two, so a position preference cancels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cuma.cli import main


def test_both_orders_are_scored_and_averaged(tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(["compare", "--quick", "data.option_order=both", "methods=[base]", f"output_dir={out}"])
    frame = pd.read_parquet(out / "predictions" / "base-seed42-test.parquet")
    for permutations, codes in zip(frame["permutations"], frame["option_codes"], strict=True):
        n = len(codes)
        assert [list(p) for p in permutations] == [list(range(n)), list(range(n))[::-1]]
    fixed = tmp_path / "fixed"
    main(["compare", "--quick", "data.option_order=fixed", "methods=[base]", f"output_dir={fixed}"])
    plain = pd.read_parquet(fixed / "predictions" / "base-seed42-test.parquet")
    assert len(plain) == len(frame)
    # The averaged probabilities differ from the fixed order's alone (the tiny model has a position bias).
    assert any(
        max(abs(a - b) for a, b in zip(x, y, strict=True)) > 1e-6
        for x, y in zip(frame["probs"], plain["probs"], strict=True)
    )
