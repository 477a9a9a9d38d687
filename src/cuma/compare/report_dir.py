"""A comparison's report directory holds one run: a previous report is refused, or moved aside whole.

Writing a new report over an old one would replace the files the new run writes and leave the rest (the
predictions of a method the new run does not list, its tables and figures) looking as if they belonged
to it. So a directory with any of the files a comparison writes is refused unless the run resumes the
one that wrote them, or ``overwrite`` moves all of them (training checkpoints included) into a sibling
folder ``<dir>.old-<timestamp>`` first. Files that no comparison writes are left where they are.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import shutil
from pathlib import Path

from cuma.compare.report import REPORT_FILES
from cuma.lock import group_lock

logger = logging.getLogger("cuma.compare")

REPORT_ENTRIES = (*REPORT_FILES, "predictions", "tables", "figures", "routing-usage-*.csv")
"""What a comparison writes into its report directory (names and glob patterns)."""

TRAIN_DIR = "train"
"""The training checkpoints of a run that is not ``--quick``; refused separately unless resuming."""


def previous_report(out: Path) -> list[Path]:
    """The report files and folders an earlier comparison left in ``out`` (empty for a fresh directory)."""
    return sorted({path for pattern in REPORT_ENTRIES for path in out.glob(pattern)})


def locked_report_dir(out: Path, *, resume: bool, overwrite: bool) -> contextlib.AbstractContextManager[None]:
    """Lock ``out`` for the run (`cuma.lock.group_lock`) and, holding the lock, `claim_report_dir` it."""
    return group_lock(out, lambda: claim_report_dir(out, resume=resume, overwrite=overwrite))


def claim_report_dir(out: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Make ``out`` ready for a new report; returns the folder the old one was moved to, if any.

    Raises:
        FileExistsError: ``out`` holds a previous report and neither ``resume`` nor ``overwrite`` is set.
        ValueError: both are set (resuming continues the old run; overwriting discards it).
    """
    if resume and overwrite:
        raise ValueError("resume continues the run in output_dir and overwrite moves it aside; choose one")
    found = previous_report(out)
    if resume:
        return None
    if not overwrite:
        if found:
            names = ", ".join(path.name for path in found)
            raise FileExistsError(
                f"{out} holds a previous report ({names}); pass --overwrite to move it aside, --resume to "
                "continue its run, or choose another output_dir"
            )
        return None
    found += [out / TRAIN_DIR] if (out / TRAIN_DIR).exists() else []
    if not found:
        return None
    aside = _aside_name(out)
    aside.mkdir()
    for path in found:
        shutil.move(path, aside / path.name)
    logger.info("moved the previous report in %s aside to %s", out, aside)
    return aside


def _aside_name(out: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out.resolve()
    aside, n = out.with_name(f"{out.name}.old-{stamp}"), 1
    while aside.exists():
        n += 1
        aside = out.with_name(f"{out.name}.old-{stamp}-{n}")
    return aside
