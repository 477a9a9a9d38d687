"""An exclusive lock on an output directory, so two runs never write into one directory at once.

The lock is a file ``<directory>/.cuma.lock`` created with ``O_CREAT | O_EXCL`` (atomic on local file
systems): whoever creates it holds the directory, and it records the holder's pid, host, start time and
command. A second run is refused at once with those details. A lock left by a process that no longer
exists on this host (a run killed with ``kill -9``) is reported as stale with the path to remove; it is
never broken silently, since a wrong guess would let two runs mix their files. Under ``torchrun`` /
``accelerate launch`` every process runs the same code and only the main one takes the lock;
`group_lock` also tells the other processes when it is refused, so each stops with the same error.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from accelerate.utils import broadcast_object_list

from cuma.processes import process_state

LOCK_FILE = ".cuma.lock"


class DirectoryLockedError(FileExistsError):
    """The output directory is held by another run (or by a stale lock of a run that died)."""


class StaleLockError(DirectoryLockedError):
    """The lock's holder is not running any more on this host; the lock file must be removed by hand."""


class OutputLock:
    """Context manager holding ``<directory>/.cuma.lock`` for the duration of a run.

    Args:
        directory: the output directory; created if needed (and removed again on release if the run
            left it empty, so a run refused by a later check leaves nothing behind).
        main_process: whether this process takes the lock; the others of a multi-process run do nothing.
        command: recorded for whoever finds the directory locked (default: this process's command line).
    """

    def __init__(self, directory: str | Path, main_process: bool = True, command: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.main_process = main_process
        self.command = " ".join(sys.argv) if command is None else command
        self._holder: dict[str, Any] | None = None
        self._created_directory = False

    def __enter__(self) -> OutputLock:
        if not self.main_process:
            return self
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"output directory {self.directory} is a file")
        self._created_directory = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": self.command,
        }
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            self._release_directory()
            raise self._refusal() from None
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
            f.flush()
            os.fsync(f.fileno())
        self._holder = holder
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._holder is None:
            return
        if read_holder(self.path) == self._holder:  # never remove a lock someone else took after ours
            self.path.unlink()
        self._holder = None
        self._release_directory()

    def _release_directory(self) -> None:
        if self._created_directory and self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()

    def _refusal(self) -> DirectoryLockedError:
        holder = read_holder(self.path)
        if holder is None:
            return DirectoryLockedError(
                f"{self.directory} is locked by another cuma run ({self.path} exists but cannot be read; "
                f"it may be starting now). Remove {self.path} if no run is using the directory"
            )
        pid, host = holder.get("pid"), holder.get("host")
        who = f"pid {pid} on {host}, started {holder.get('started')}: {holder.get('command')!r}"
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            return StaleLockError(
                f"{self.directory} has a stale lock from a run that is no longer running ({who}); "
                f"remove {self.path} if no run is using the directory"
            )
        return DirectoryLockedError(
            f"{self.directory} is in use by another cuma run ({who}); wait for it to finish or choose "
            f"another output directory (if that run has ended without cleaning up, remove {self.path})"
        )


@contextlib.contextmanager
def group_lock(directory: str | Path, prepare: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold `OutputLock` on ``directory`` from the main process of this run's process group.

    The main process takes the lock and then runs ``prepare`` (checks or clean-up that need the lock);
    every process learns the outcome before going on, so a refusal stops each one with the same error
    instead of leaving the others waiting for the main process at their next collective call.
    """
    with contextlib.ExitStack() as stack:
        failure = None
        if process_state().is_main_process:
            try:
                stack.enter_context(OutputLock(directory))
                if prepare is not None:
                    prepare()
            except Exception as err:  # every process must hear of it, whatever it is
                failure = err
        shared = [failure]
        broadcast_object_list(shared)
        if shared[0] is not None:
            raise shared[0]
        yield


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file; None if it is missing, empty or not a JSON object."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks without sending anything)."""
    if os.name == "nt":  # there os.kill terminates the process; assume the holder is alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True
