"""Atomic file writes: a crash, an interrupt or a full disk never leaves a half-written file behind.

Each write goes to a temporary file next to the target (same directory, so the same file system), is
flushed and fsynced, and then `os.replace` puts it in place in one step; the directory is fsynced so the
rename survives a power cut. On any error the temporary file is removed, the previous file (if any)
stays whole, and the error names the path that could not be written: an `OSError` keeps its errno
(``ENOSPC``: "No space left on device") and its subclass (``PermissionError``, ...); any other failure
of the writing library becomes an `OSError` with the library's message.

`atomic_path` hands libraries that open files themselves (pandas ``to_parquet``/``to_csv``, matplotlib
``savefig``, safetensors ``save_file``) a temporary path with the target's suffix, so they pick the same
format; `atomic_directory` does the same for writers of whole folders (``datasets`` ``save_to_disk``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default, whatever the locale); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, it replaces ``path``.

    The temporary file already exists (empty, created exclusively with the usual permissions), so no
    other writer can take its name; the block may overwrite it by name.
    """
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise write_error(path, err) from err
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and write_error(path, err) is not err:
            raise write_error(path, err) from err
        raise
    _fsync_directory(path.parent)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; when the block ends without error, it becomes ``path``.

    A folder cannot be swapped in one step, so a previous ``path`` is first renamed aside and removed once
    the new one is in place: at every moment ``path`` is either the old folder whole or the new one whole
    (or, between the two renames, absent).
    """
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        tmp.mkdir()
    except OSError as err:
        raise write_error(path, err) from err
    old = None
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                fsync_path(file)
        if path.exists():
            old = _temporary_name(path)
            path.rename(old)
        tmp.rename(path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            old.rename(path)
        if isinstance(err, Exception) and write_error(path, err) is not err:
            raise write_error(path, err) from err
        raise
    if old is not None:
        shutil.rmtree(old)
    _fsync_directory(path.parent)


def write_error(path: Path, err: Exception) -> OSError:
    """An `OSError` (same subclass and errno when ``err`` is one) saying ``path`` could not be written.

    Its ``unwritten_path`` attribute is that path; an error that already has one (from an inner write of
    several nested ones) is returned as it is, so it keeps naming the file that failed.
    """
    if getattr(err, "unwritten_path", None) is not None:
        return err
    if isinstance(err, OSError) and err.errno is not None:
        error = OSError(err.errno, f"cannot write {path}: {err.strerror or err}")
    else:
        reason = str(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
        error = OSError(f"cannot write {path}: {reason}")
    error.unwritten_path = path
    return error


def _temporary_name(path: Path) -> Path:
    """A hidden sibling of ``path`` that ends with the same suffix (libraries choose formats by it)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")


def fsync_path(path: Path) -> None:
    """Flush a file or directory to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable. The file is already in place, so a file system that
    cannot sync a directory (Windows, some network mounts) only loses durability, not data."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fsync_path(directory)
