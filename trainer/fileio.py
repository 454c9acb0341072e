"""Atomic file writes: readers see the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, write) -> Path:
    """Write a file atomically: `write(binary_handle)` fills a temp file beside `path`, then
    `os.replace` puts it in place, so readers see the old file or the new one, never half of one.

    Args:
        path: destination; its folder is created if missing.
        write: callable taking the open binary file handle.

    Returns:
        The path written (the temp file is removed if `write` raises).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read by others
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write` for UTF-8 text."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
