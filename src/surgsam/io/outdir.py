"""The output folder of ``surgsam segment`` / ``surgsam refer``: one run at a time, no mixing.

:class:`OutputFolder` refuses a folder that already holds files unless ``overwrite`` (then the
earlier run's masks that this run does not rewrite are removed at the end, so the folder never
mixes two runs), locks the folder for the run (``.surgsam.lock``, an ``flock``; a second run is
refused at once), and writes :data:`MANIFEST` atomically when the run has finished. A folder
without a manifest holds an unfinished or failed run.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .atomic import OutputError, atomic_write_json, describe_os_error, is_temporary_name
from .coco import COCO_FILE

__all__ = ["LOCK_NAME", "MANIFEST", "OutputFolder", "OutputFolderError", "check_output_file", "check_output_folder"]

#: Written last, atomically: what the run was and how many frames it wrote.
MANIFEST = "surgsam_manifest.json"
#: Held (flock) while a run writes into the folder; removed when it ends.
LOCK_NAME = ".surgsam.lock"

# the mask files the writers produce: palette PNGs, SA-V per-object folders and the COCO RLE file
_FRAME_PNG = re.compile(r"^\d{5,}\.png$")
_OBJ_DIR = re.compile(r"^\d{3,}$")


class OutputFolderError(ValueError):
    """The output folder (or file) cannot be used: not empty, a file, or in use by another run."""


def check_output_file(path: str | os.PathLike[str], overwrite: bool, what: str = "output file") -> Path:
    """Refuse ``path`` if it is a folder, or an existing file without ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise OutputFolderError(f"{what} {path} is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputFolderError(f"{what} {path} already exists: pass --overwrite to replace it")
    return path


def check_output_folder(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """The checks :class:`OutputFolder` makes on opening, without creating or locking anything
    (to refuse every folder of a batch before the first run): not a file, and empty (temporary
    files of a killed run aside) unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"--out {path} is a file, not a folder: give a folder for the masks")
    if path.is_dir() and not overwrite:
        others = sorted(e for e in os.listdir(path) if e != LOCK_NAME and not is_temporary_name(e))
        if others:
            raise OutputFolderError(_not_empty(path, others))
    return path


def _not_empty(path: Path, others: list[str]) -> str:
    shown = ", ".join(others[:3]) + (f", ... ({len(others)} entries)" if len(others) > 3 else "")
    return (
        f"output folder {path} is not empty ({shown}): pass --overwrite to replace its results, "
        "or choose an empty or new folder"
    )


class OutputFolder:
    """Hold an output folder for one run (a context manager).

    Args:
        path: the folder (created with its parents).
        overwrite: accept a folder holding files; the earlier run's mask files this run does
            not rewrite, its manifest and leftover temporary files are removed.
    """

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self._fd: int | None = None
        self._stale: set[Path] = set()
        self._old_manifest = False  # an earlier run's manifest, removed before this run's first write

    # -- open / close -----------------------------------------------------------------------
    def __enter__(self) -> OutputFolder:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create and lock the folder, and check it may be written to."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputFolderError(f"--out {self.path} is a file, not a folder: give a folder for the masks")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create the output folder {self.path}: {describe_os_error(exc)}", exc.errno
            ) from exc
        self._lock()
        try:
            self._check_contents()
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        import fcntl

        lock = self.path / LOCK_NAME
        for _ in range(3):  # the path may be unlinked by a run ending between our open and flock
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise OutputError(f"cannot create the lock file {lock}: {describe_os_error(exc)}", exc.errno) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    who = f" (process {holder})" if holder else ""
                    raise OutputFolderError(
                        f"another surgsam run{who} is writing to {self.path}; wait for it to end or choose "
                        "another --out"
                    ) from None
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                    # a file system without locks (some network mounts): run, but say so
                    print(
                        f"warning: {self.path} cannot be locked ({describe_os_error(exc)}); a second run into "
                        "it at the same time would not be detected",
                        file=sys.stderr,
                    )
                    self._fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
                    return
                raise OutputError(f"cannot lock {lock}: {describe_os_error(exc)}", exc.errno) from exc
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)  # we locked a lock file that a finishing run had just removed
        raise OutputFolderError(f"could not lock {self.path}: other runs keep starting and ending there")

    def close(self) -> None:
        """Release the lock (the lock file is removed while still held, so no run can slip in)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.unlink(self.path / LOCK_NAME)
        except OSError:
            pass
        os.close(fd)

    def _check_contents(self) -> None:
        entries = sorted(e for e in os.listdir(self.path) if e != LOCK_NAME)
        leftovers = [e for e in entries if is_temporary_name(e)]
        others = [e for e in entries if not is_temporary_name(e)]
        if others and not self.overwrite:
            raise OutputFolderError(_not_empty(self.path, others))
        for name in leftovers:  # temporary files of a run that was killed
            _unlink_quietly(self.path / name)
        if not self.overwrite:
            return
        self._old_manifest = (self.path / MANIFEST).exists()
        self._stale = set(self._mask_files())

    def _mask_files(self) -> Iterable[Path]:
        for entry in os.scandir(self.path):
            if entry.is_file() and (_FRAME_PNG.match(entry.name) or entry.name == COCO_FILE):
                yield Path(entry.path)
            elif entry.is_dir() and _OBJ_DIR.match(entry.name):
                for sub in os.scandir(entry.path):
                    if sub.is_file() and (_FRAME_PNG.match(sub.name) or is_temporary_name(sub.name)):
                        yield Path(sub.path)

    # -- during and after the run -----------------------------------------------------------
    def will_write(self) -> None:
        """Call before writing a file: the first call removes an earlier run's manifest (from
        then on the folder no longer holds that run unchanged). A run refused before its first
        write leaves an earlier run untouched."""
        if self._old_manifest:
            self._old_manifest = False
            try:
                os.unlink(self.path / MANIFEST)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise OutputError(
                    f"cannot remove the earlier run's manifest {self.path / MANIFEST}: {describe_os_error(exc)}",
                    exc.errno,
                ) from exc

    def record(self, paths: Path | Iterable[Path]) -> None:
        """Note files this run wrote (they are not stale)."""
        if not self._stale:
            return
        for p in [paths] if isinstance(paths, Path) else paths:
            self._stale.discard(Path(p))

    def finish(self, manifest: Mapping[str, Any]) -> Path:
        """Remove the earlier run's stale mask files, then write :data:`MANIFEST` atomically.

        ``manifest`` is stored with ``finished`` (UTC time) added; it must be JSON data.
        """
        for p in sorted(self._stale):
            _unlink_quietly(p)
            if p.parent != self.path:
                try:
                    p.parent.rmdir()  # an object folder of the earlier run, now empty
                except OSError:
                    pass
        self._stale = set()
        from .. import __version__

        self.will_write()
        doc = {
            "surgsam": __version__,
            **manifest,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        return atomic_write_json(self.path / MANIFEST, doc, what="run manifest")


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
