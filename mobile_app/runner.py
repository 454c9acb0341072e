"""Run slow work (grading, syncing) off the UI thread and post the outcome back to it.

Kivy draws on the main thread; anything that takes more than a frame runs in a worker thread
and its result is handed back with `Clock.schedule_once`, so callbacks always run on the UI
thread and may touch widgets.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kivy.clock import Clock

log = logging.getLogger(__name__)


class BackgroundRunner:
    """Starts daemon threads (the app can quit while one runs) and counts the active ones."""

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        """How many submitted jobs have not finished yet."""
        with self._lock:
            return self._active

    def submit(self, fn: Callable, *args, on_done: Callable | None = None,
               on_error: Callable[[BaseException], None] | None = None, **kwargs) -> threading.Thread:
        """Run `fn(*args, **kwargs)` in a thread; then `on_done(result)` or `on_error(exc)` on the UI thread."""
        def work() -> None:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # reported to the UI, never lost in a thread
                log.exception("background job %s failed", getattr(fn, "__name__", fn))
                self._finish(on_error, exc)
            else:
                self._finish(on_done, result)

        with self._lock:
            self._active += 1
        thread = threading.Thread(target=work, name=f"bg-{getattr(fn, '__name__', 'job')}", daemon=True)
        thread.start()
        return thread

    def _finish(self, callback: Callable | None, value) -> None:
        def deliver(_dt) -> None:
            with self._lock:
                self._active -= 1
            if callback is not None:
                callback(value)
        Clock.schedule_once(deliver, 0)

    @staticmethod
    def post(callback: Callable, *args) -> None:
        """Call `callback(*args)` on the UI thread (for progress reports from a worker)."""
        Clock.schedule_once(lambda _dt: callback(*args), 0)
