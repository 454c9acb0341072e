"""The test picker: hands out prepared photo paths as if a user had chosen them."""
from __future__ import annotations

from pathlib import Path

from kivy.clock import Clock

from mobile_app.pickers import PhotoPicker, PickResult


class FakePicker(PhotoPicker):
    """`queue` holds the next answers; `pick_photo`/`take_photo`/`pick_labels` pop one, like the platform would."""

    def __init__(self):
        self.queue: list[PickResult] = []
        self.calls: list[str] = []

    @property
    def has_camera(self) -> bool:
        return True

    def push(self, path: str | Path | None = None, *, error: str = "") -> None:
        self.queue.append(PickResult(path=Path(path) if path else None, error=error))

    def _answer(self, kind: str, callback) -> None:
        self.calls.append(kind)
        result = self.queue.pop(0) if self.queue else PickResult()
        Clock.schedule_once(lambda _dt: callback(result), 0)   # asynchronous, like Android

    def pick_photo(self, callback) -> None:
        self._answer("pick", callback)

    def take_photo(self, callback) -> None:
        self._answer("take", callback)

    def pick_labels(self, callback) -> None:
        self._answer("labels", callback)
