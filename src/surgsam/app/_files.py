"""The app's files: a private folder per server.

Every file the app writes goes through :func:`surgsam.io.atomic.atomic_path` with
``private=True``: a temporary name (created ``0600``) in the same folder, renamed into place only
once complete, so a run stopped half-way (Stop, a closed tab, a full disk) never leaves a
truncated overlay or zip where a finished one is expected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["PrivateDir", "discard"]


def discard(path: str | os.PathLike[str]) -> None:
    """Remove a file if it is there."""
    try:
        os.unlink(path)
    except OSError:
        pass


class PrivateDir:
    """A folder only this user can enter (``0700``), removed by :meth:`remove` (idempotent)."""

    def __init__(self, prefix: str = "surgsam-app-", parent: str | os.PathLike[str] | None = None):
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # mkdtemp makes it 0700
        os.chmod(self.path, 0o700)

    def sub(self, name: str) -> Path:
        """A ``0700`` sub-folder (made if missing)."""
        p = self.path / name
        p.mkdir(mode=0o700, exist_ok=True)
        return p

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
