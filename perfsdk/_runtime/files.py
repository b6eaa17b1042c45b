"""Files written whole or not at all: beside the target under a temporary name, synced, renamed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["fsync_path", "replace_atomically", "write_atomically"]


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's) data to the disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # directories cannot be opened on some platforms; the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` a temporary file beside ``path`` (its own for this call, created empty), sync
    it, rename it into place: a reader sees the old file or the whole new one, and a failure leaves
    no temporary file behind. The file gets the mode ``open`` gives a new file (0o666 less the umask).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> replace_atomically(target, lambda tmp: tmp.write_text("whole")).read_text()
    'whole'
    """
    final = Path(path)
    tmp = _new_temporary(final)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(final.parent)
    return final


def _new_temporary(final: Path) -> Path:
    """A new empty file beside ``final``, named for this call: two threads writing one path must not
    share a temporary file (one's rename or cleanup would take the other's). Its name is short
    whatever ``final``'s (a 250-character name is legal, and so must its temporary be), and it is
    created as ``open`` creates a file, not with ``mkstemp``'s mode 0o600."""
    while True:
        tmp = final.with_name(f".{final.name[:32]}.{os.urandom(4).hex()}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue  # taken by another call: draw again
        return tmp


def write_atomically(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """``data`` (text as UTF-8) at ``path``, whole or not at all (``replace_atomically``)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data

    def write(tmp: Path) -> None:
        tmp.write_bytes(payload)

    return replace_atomically(path, write)
