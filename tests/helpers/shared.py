"""Build a heavy session artifact once per test run, even when pytest-xdist runs several workers.

Each xdist worker is its own process with its own session fixtures; without this, every worker
would train and export the session's model again. The first worker to ask builds the artifact
into a folder shared by all workers of this run (the parent of their base temp folders) under a
file lock; the others wait on the lock, then read what it wrote. A build that fails leaves no
`<name>.done` marker (beside the folder, not in it), so the next worker tries again and fails
with its own error.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock


def shared_root(tmp_path_factory) -> Path:
    """The folder every worker of this run sees (the session's base temp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`<shared root>/<name>`, filled by `build(folder)` exactly once per run."""
    folder = shared_root(tmp_path_factory) / name
    done = folder.with_name(name + ".done")
    with FileLock(str(folder) + ".lock"):
        if not done.is_file():
            if folder.exists():        # a failed earlier attempt: start clean
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder
