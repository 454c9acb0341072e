"""The interface every photo picker implements."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PickResult:
    """What a pick produced: a readable local file, or nothing with a reason.

    `path` is None when the user cancelled (`error` empty) or the platform failed (`error` says
    why, in words a user can act on).
    """

    path: Path | None = None
    error: str = ""

    @property
    def cancelled(self) -> bool:
        return self.path is None and not self.error


Callback = Callable[[PickResult], None]


class PhotoPicker:
    """Pick a photo from the gallery or take one with the camera.

    Both methods return at once; `callback` is called exactly once, later, on the UI thread
    (implementations use `Clock.schedule_once` when the platform answers on another thread).
    """

    def pick_photo(self, callback: Callback) -> None:
        """Let the user choose an existing photo."""
        raise NotImplementedError

    def take_photo(self, callback: Callback) -> None:
        """Let the user take a new photo with the camera."""
        raise NotImplementedError

    def pick_labels(self, callback: Callback) -> None:
        """Let the user choose a labels CSV (``image,grade[,patient]``, photo paths relative to it).

        The default says the platform cannot: a picker that can hand back a real folder overrides it.
        """
        from kivy.clock import Clock

        Clock.schedule_once(lambda _dt: callback(PickResult(
            error="choosing a labels file is not available on this device")), 0)

    @property
    def has_camera(self) -> bool:
        """Whether `take_photo` can work here (the Diagnose screen disables the button if not)."""
        return False
