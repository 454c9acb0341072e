"""What the screens ask for, done with `edge_client.api.EdgeClient`, as plain outcomes.

This is the only module of the app that talks to the edge client (and so to the model, the
disk and the network). It has no Kivy in it: every method is a blocking call meant for a worker
thread (see `runner.py`), and every failure a user can meet comes back as an outcome with a
reason instead of an exception, so screens only choose words and colours.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edge_client.api import EdgeClient
from edge_client.errors import EdgeError, ModelNotInstalled, PhotoQualityError
from edge_client.preprocess import ImageError
from edge_client.runtimes import available_runtimes


@dataclass(frozen=True)
class GradeOutcome:
    """status: "ok" (diagnosis set), "unusable" (quality gate: reason + hint), "unreadable"
    (not an image), "no_model", or "failed" (anything else, reason says what)."""

    status: str
    diagnosis: Any = None
    reason: str = ""       # for "unusable": the quality gate's code (too_dark, blurry, ...)
    hint: str = ""


@dataclass(frozen=True)
class SyncOutcome:
    """status: "updated", "current" (nothing newer), "cancelled" or "failed"."""

    status: str
    version: int | None = None
    message: str = ""


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Actions:
    """Blocking wrappers around one EdgeClient; safe to call from worker threads one at a time."""

    def __init__(self, client: EdgeClient):
        self.client = client
        self._lock = threading.Lock()   # one grade or sync at a time touches the model files

    def installed_model(self):
        """The installed model's card, or None."""
        return self.client.installed_model()

    def personal_head_in_use(self) -> bool:
        """Whether a head trained on this device replaces the published one when grading."""
        return self.client.personal_head() is not None

    def notice(self) -> str:
        """What the client wants the user to know (e.g. it fell back to an older model), or ""."""
        return self.client.notice or ""

    def grade(self, photo: str | Path) -> GradeOutcome:
        """Grade one photo on the device."""
        with self._lock:
            try:
                return GradeOutcome("ok", diagnosis=self.client.diagnose(str(photo)))
            except PhotoQualityError as exc:
                return GradeOutcome("unusable", reason=exc.reason, hint=exc.hint)
            except ModelNotInstalled as exc:
                return GradeOutcome("no_model", reason=_reason(exc))
            except ImageError as exc:
                return GradeOutcome("unreadable", reason=_reason(exc))
            except (EdgeError, OSError, ValueError, RuntimeError) as exc:
                return GradeOutcome("failed", reason=_reason(exc))

    def sync(self, server_url: str, *, public_key: str = "",
             progress: Callable[[int, int], None] | None = None,
             cancel: threading.Event | None = None) -> SyncOutcome:
        """Check the server for a newer model and install it (verified by the edge client)."""
        if not server_url:
            return SyncOutcome("failed", message="no server address set")
        with self._lock:
            try:
                result = self.client.sync(server_url, public_key=public_key or None,
                                          progress=progress, cancel=cancel)
            except Exception as exc:  # network, signature, disk: all shown to the user
                if cancel is not None and cancel.is_set():
                    return SyncOutcome("cancelled", message=_reason(exc))
                return SyncOutcome("failed", message=_reason(exc))
        if result.cancelled:
            return SyncOutcome("cancelled", version=result.version, message=result.message)
        return SyncOutcome("updated" if result.updated else "current", version=result.version,
                           message=result.message)

    def history(self) -> list:
        """Past results, newest first."""
        return self.client.history()

    def delete_history(self, entry_id) -> None:
        """Forget one past result."""
        self.client.delete_history(entry_id)

    def export_history(self, folder: str | Path) -> Path:
        """Write the history as CSV into `folder` (a new, timestamped file) and return its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return Path(self.client.export_history_csv(folder / f"history-{time.strftime('%Y%m%d-%H%M%S')}.csv"))


def server_reachable(server_url: str, timeout: float = 1.5) -> bool:
    """Whether a TCP connection to the server's host and port opens (the online/offline badge).

    Only a connection is opened, nothing is sent: the badge must not leak anything.
    """
    parsed = urlparse(server_url)
    if not parsed.hostname:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def runtime_names() -> list[str]:
    """Names of the model runtimes usable on this device, best first."""
    return [r.name for r in available_runtimes()]
