"""One lock per EDGE_HOME, across processes (the app and the CLI) and threads.

``fcntl.flock`` on ``EDGE_HOME/.lock``: the kernel releases it when its process dies, so a crash
never leaves the folder locked. Within one process a re-entrant thread lock guards the same
file descriptor. Where ``fcntl`` is missing (Windows) only the in-process lock applies.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from edge_client.errors import BusyError

try:
    import fcntl
except ImportError:  # Windows: the in-process lock only
    fcntl = None

__all__ = ["HomeLock"]


class HomeLock:
    """A re-entrant lock on one EDGE_HOME: ``fcntl.flock`` on ``EDGE_HOME/.lock`` across processes,
    a thread lock within this one. A dead process's lock is released by the kernel."""

    _registry: dict[str, "HomeLock"] = {}
    _registry_guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @classmethod
    def for_home(cls, home: Path) -> "HomeLock":
        key = str(Path(home).resolve())
        with cls._registry_guard:
            if key not in cls._registry:
                cls._registry[key] = cls(Path(key) / ".lock")
            return cls._registry[key]

    @contextmanager
    def hold(self, timeout: float = 10.0, what: str = "update the model store"):
        """Hold the lock for a ``with`` block; wait up to ``timeout`` seconds.

        Raises:
            BusyError: another process or thread kept it that long.
        """
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=max(timeout, 0.0)):
            raise BusyError(f"{self.path.parent}: another task in this app is busy; could not {what}: try again")
        try:
            if self._depth == 0:
                self._acquire_file(deadline, what)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing releases the flock
                    self._fd = None
        finally:
            self._thread_lock.release()

    def _acquire_file(self, deadline: float, what: str) -> None:
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise BusyError(f"{self.path.parent}: another process (the app or the command line) is "
                                    f"using this state folder; could not {what}: try again when it is done") from None
                time.sleep(0.05)
