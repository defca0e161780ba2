"""Atomic file writes: write to a temporary name in the same folder, then rename into place.

A write that fails part-way (full disk, file-size limit, an exception while encoding) leaves
whatever file had the name before untouched, and no half-written file under the final name:
the temporary file is removed and :class:`OutputError` names the file (and frame) that failed.
``os.replace`` within one folder is atomic on POSIX and Windows.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "OutputError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "describe_os_error",
    "is_temporary_name",
]

PathLike = str | os.PathLike[str]

_TMP_MARK = ".part"
_TMP_NAME = re.compile(r"^\..*\.[0-9a-f]{8}\.part(\.[^.]*)?$")


class OutputError(OSError):
    """An output file could not be written; the message names it (and the frame, if any).

    Files written earlier under the same name are left as they were. ``errno`` is the
    underlying error's, when there was one.
    """

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


def describe_os_error(exc: BaseException) -> str:
    """A short reason for an I/O failure ("no space left on device", "file too large", ...)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno == errno.EFBIG:
            return "file too large (a file-size limit such as `ulimit -f`, or the file system's)"
        if exc.errno == errno.ENOSPC:
            return "no space left on device"
        if exc.errno == errno.EDQUOT:
            return "disk quota exceeded"
        return (exc.strerror or os.strerror(exc.errno)).lower()
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


def is_temporary_name(name: str) -> bool:
    """True for the names :func:`atomic_path` writes to before the rename."""
    return bool(_TMP_NAME.match(name))


def _temporary_path(path: Path) -> Path:
    # hidden, unique, and ending in the real suffix (encoders choose the format by extension)
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}{_TMP_MARK}{path.suffix}")


@contextmanager
def atomic_path(path: PathLike, *, what: str | None = None, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    On any exception the temporary file is removed and ``path`` is untouched; an ``OSError``
    becomes :class:`OutputError` naming ``path`` (``what`` says what it is, e.g. "frame 12").
    The temporary file is created empty (mode 0666 minus the umask, like a plain ``open``; with
    ``private``, 0600: only this user can read it, e.g. the app's outputs). Parent folders are
    created.
    """
    path = Path(path)
    label = f"{path} ({what})" if what else str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder has this name", str(path))
        tmp = _temporary_path(path)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666))
    except OSError as exc:
        raise OutputError(f"cannot write {label}: {describe_os_error(exc)}", exc.errno) from exc
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(
                f"cannot write {label}: {describe_os_error(exc)}; any earlier file of that name was left intact",
                exc.errno,
            ) from exc
        raise


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write_bytes(path: PathLike, data: bytes, *, what: str | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (flushed and fsynced before the rename)."""
    with atomic_path(path, what=what) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: PathLike, text: str, *, what: str | None = None) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), what=what)


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2, what: str | None = None) -> Path:
    """Write ``obj`` as JSON (plus a newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n", what=what)
