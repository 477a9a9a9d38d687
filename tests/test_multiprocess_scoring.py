"""Scoring split over two ``torchrun`` processes gathers exactly what one process computes: the same rows
in the same order with the same probabilities, and the same routing vectors; ``cuma compare`` writes the
predictions of a one-process run.

Run as a script under ``torchrun`` (``__main__`` below), this file scores tiny random models with
``split=True`` and the main process pickles the predictions and routing vectors into a folder.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gss-cuma.yaml"
SHARED = "batches shared out over 2 processes"
# (method, routing tokens or None): prefix groups per respondent, one system-prompt group split into
# batches, CuMA's routing read at the answer (on reused prefixes) and over the prompt (scored whole),
# and prefix tuning (never on reused prefixes).
CASES = [("persona", None), ("base", None), ("cuma", "answer"), ("cuma", "prompt"), ("prefix", None)]


def _launch(processes: int, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    env["OMP_NUM_THREADS"] = "1"  # one thread in both runs: the same kernels, the same rounding
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
    ]
    done = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _read(folder: Path) -> dict:
    return {case: pickle.loads((folder / f"{case[0]}-{case[1]}.pkl").read_bytes()) for case in CASES}


def assert_same_predictions(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for a, b in zip(got["probs"], want["probs"], strict=True):
        assert np.array_equal(a, b)


def test_two_processes_score_exactly_what_one_does(tmp_path: Path) -> None:
    _launch(1, __file__, str(tmp_path / "one"))
    two = _launch(2, __file__, str(tmp_path / "two"))
    assert two.stderr.count(SHARED) == 2 * len(CASES)  # both processes took the split path, every case
    one, two = _read(tmp_path / "one"), _read(tmp_path / "two")
    for case in CASES:
        (want, want_routing), (got, got_routing) = one[case], two[case]
        assert_same_predictions(got, want)
        assert got_routing.keys() == want_routing.keys() and (want_routing or case[1] is None)
        for layer, vectors in want_routing.items():
            assert np.array_equal(got_routing[layer], vectors), (case, layer)


def test_two_process_compare_writes_the_predictions_of_one_process(tmp_path: Path) -> None:
    """Methods without training (the weights then agree to the bit, so the predictions must too)."""
    settings = ["methods=[base, persona, majority]", "data.n_test=30", "data.n_heldout=12"]
    for processes, name in ((1, "one"), (2, "two")):
        out = f"output_dir={tmp_path / name}"
        command = ["-m", "cuma", "compare", "--config", str(CONFIG), "--quick", out]
        done = _launch(processes, *command, *settings)
    assert SHARED in done.stderr and done.stdout.count("report:") == 1  # one report, by the main process
    one, two = (
        sorted(p.relative_to(tmp_path / n) for p in (tmp_path / n).rglob("*.parquet")) for n in ["one", "two"]
    )
    scored = {
        f"predictions/{m}-seed42-{split}.parquet"
        for m in ("base", "persona")
        for split in ("test", "heldout")
    }
    assert one == two and scored <= {str(path) for path in one}  # with the references the report adds
    for name in one:
        want, got = pd.read_parquet(tmp_path / "one" / name), pd.read_parquet(tmp_path / "two" / name)
        assert_same_predictions(got, want)


def _score_all(out: Path) -> None:
    """Score every case with ``split=True``; the main process pickles (predictions, routing vectors)."""
    from cuma.evaluation.scoring import score_examples
    from cuma.evaluation.topology import RoutingCollector
    from cuma.processes import process_state
    from cuma.tiny import tiny_tokenizer
    from test_speed_scoring import randomised, survey

    logging.basicConfig(level=logging.INFO)
    out.mkdir(parents=True, exist_ok=True)
    for name, tokens in CASES:
        prepared = randomised(name)
        routing = RoutingCollector(tokens) if tokens else None
        frame = score_examples(
            prepared,
            tiny_tokenizer(),
            survey(respondents=7, persona=name != "base"),
            use_embeddings=prepared.uses_demographics,
            batch_size=3,
            routing=routing,
            split=True,
        )
        if process_state().is_main_process:
            vectors = routing.vectors() if routing else {}
            (out / f"{name}-{tokens}.pkl").write_bytes(pickle.dumps((frame, vectors)))


if __name__ == "__main__":
    _score_all(Path(sys.argv[1]))
