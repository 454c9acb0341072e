"""The test picker: hands out prepared files as if a user had chosen them, as a phone does.

Like the Android picker, it copies each chosen photo into its own cache folder (so the app's
"delete the copy once graded" runs for real), unpacks labelled sets with `mobile_app.labelset`,
and records what the app offered to the share sheet.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from kivy.clock import Clock

from mobile_app.labelset import LabelSetError, unpack
from mobile_app.pickers import PhotoPicker, PickResult, ShareResult


class FakePicker(PhotoPicker):
    """`queue` holds the next answers; `pick_photo`/`take_photo`/`pick_labels` pop one, like the platform would."""

    def __init__(self, cache_dir: str | Path):
        super().__init__(cache_dir)
        self.queue: list[PickResult] = []
        self.calls: list[str] = []
        self.shared: list[tuple[str, str]] = []
        self.copies: list[Path] = []

    @property
    def has_camera(self) -> bool:
        return True

    def push(self, path: str | Path | None = None, *, error: str = "") -> None:
        self.queue.append(PickResult(path=Path(path) if path else None, error=error))

    def _answer(self, kind: str, callback) -> None:
        self.calls.append(kind)
        result = self.queue.pop(0) if self.queue else PickResult()
        if result.path is not None and kind in ("pick", "take"):      # a copy, as content URIs are copied
            copy = self.cache_file(kind, result.path.suffix)
            shutil.copyfile(result.path, copy)
            self.copies.append(copy)
            result = PickResult(path=copy)
        elif result.path is not None and kind == "labels" and result.path.suffix.lower() == ".zip":
            try:
                result = PickResult(path=unpack([result.path], self.cache_file("labelset", "")))
            except LabelSetError as exc:
                result = PickResult(error=str(exc))
        Clock.schedule_once(lambda _dt: callback(result), 0)   # asynchronous, like Android

    def pick_photo(self, callback) -> None:
        self._answer("pick", callback)

    def take_photo(self, callback) -> None:
        self._answer("take", callback)

    def pick_labels(self, callback) -> None:
        self._answer("labels", callback)

    def share_file(self, path, mime: str, callback) -> None:
        self.shared.append((str(path), mime))
        Clock.schedule_once(lambda _dt: callback(ShareResult(shared=True)), 0)

    def cached(self) -> list[Path]:
        """Copies still in the cache (the app should have deleted each graded one)."""
        return sorted(p for p in self.cache_dir.glob("*") if p.is_file()) if self.cache_dir.is_dir() else []
