"""Converter chatter (absl/TensorFlow C++ lines, progress bars, warnings) goes to a log file.

litert-torch, the LiteRT interpreter, ONNX Runtime's quantizer and coremltools print tens of lines,
many from C++ straight to file descriptors 1 and 2, so redirecting ``sys.stdout`` is not enough:
``to_log`` points both descriptors (and Python's streams, warnings and logging) at the log file
for the duration of a conversion. The terminal keeps one line per artifact (export/bundle.py).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from pathlib import Path

LOG_NAME = "export.log"  # in the output folder, next to report.md


def log_path_for(artifact: Path) -> Path:
    """The log file of the folder an artifact is written to."""
    return Path(artifact).parent / LOG_NAME


@contextlib.contextmanager
def to_log(path: Path | None, title: str | None = None):
    """Send everything printed inside the block to ``path`` (appended), or nowhere when None.

    Args:
        path: the log file, or None to discard (e.g. a runtime's "Created XNNPACK delegate").
        title: a heading line written before the block's output.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    target = open(path, "a", encoding="utf-8") if path is not None else open(os.devnull, "w")  # noqa: SIM115
    saved = []
    try:
        if title:
            target.write(f"== {title}\n")
            target.flush()
        with contextlib.suppress(OSError, ValueError):  # no real fds (e.g. an embedded interpreter)
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(target.fileno(), fd)
        root = logging.getLogger()
        level = root.level
        handler = logging.StreamHandler(target)
        root.addHandler(handler)
        keep = root.handlers[:-1]
        root.handlers = [handler]
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(_Text(target)), \
                    contextlib.redirect_stderr(_Text(target)):
                warnings.simplefilter("always")
                yield
        finally:
            root.handlers = keep
            root.setLevel(level)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, copy in reversed(saved):
            os.dup2(copy, fd)
            os.close(copy)
        target.close()


class _Text(io.TextIOBase):
    """A text stream writing through to the log file (flushed, so lines interleave with C++'s)."""

    def __init__(self, target) -> None:
        self._target = target

    def write(self, text: str) -> int:
        self._target.write(text)
        self._target.flush()
        return len(text)

    def writable(self) -> bool:
        return True
