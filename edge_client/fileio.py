"""Durable file writes and file hashes: the one implementation every package uses.

It lives in edge_client (the ground floor: no torch, no Kivy) so that the trainer, export, the
hub, federation nodes and the phone all write state the same way. A write is durable when a
crash at any instant leaves the old file or the new one, never half of one, and a completed
write survives power loss: the data is fsynced before the rename, and the folder after it.
"""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from edge_client.errors import DiskFullError

__all__ = ["atomic_write", "atomic_write_text", "fsync_dir", "sha256_file", "sha256_bytes"]

_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename or a new file) to disk; a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (and Windows) cannot fsync a folder
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | Callable[[BinaryIO], object], *, mode: int = 0o644) -> Path:
    """Write ``path`` atomically and durably.

    The content goes to a temporary file beside ``path``, is fsynced, renamed over ``path`` and
    the folder is fsynced, so readers see the old file or the new one.

    Args:
        path: destination; its folder is created if missing.
        data: the bytes, or a callable that writes into the open binary handle (torch.save, ...).
        mode: permission bits of the new file (0o600 for keys and tokens).

    Returns:
        The path written.

    Raises:
        DiskFullError: no space (or a file-size limit) while writing; nothing is left behind.
        OSError: any other failure; the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise DiskFullError(f"{path}: no space left to write ({exc.strerror})") from None
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, *, mode: int = 0o644) -> Path:
    """``atomic_write`` for UTF-8 text."""
    return atomic_write(path, text.encode("utf-8"), mode=mode)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes in memory."""
    return hashlib.sha256(data).hexdigest()
