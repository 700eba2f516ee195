"""Creating files and directories only their owner can read: the ledger (what every call cost,
which projects, which sessions) and plan task logs (an agent's whole output) are private.

What exists already keeps the permissions its owner gave it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

__all__ = ["DIR_MODE", "FILE_MODE", "create_private_file", "make_private_dirs", "open_private"]

#: Files llmledger creates: read and write for the owner only.
FILE_MODE = 0o600
#: Directories llmledger creates: the owner only.
DIR_MODE = 0o700


def make_private_dirs(path: str | os.PathLike[str]) -> None:
    """Create the directory ``path`` and any missing parents with :data:`DIR_MODE` (less
    what the umask takes away); directories that exist are left as they are."""
    missing: list[Path] = []
    folder = Path(path)
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process, or not a directory
            if not folder.is_dir():
                raise


def create_private_file(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` empty with :data:`FILE_MODE` unless it exists; True if it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


def open_private(path: str | os.PathLike[str], mode: str) -> IO[Any]:
    """``open(path, mode)``, creating a missing file with :data:`FILE_MODE` (an existing file
    keeps its permissions)."""
    return open(path, mode, opener=_private_opener)
