"""The interface every platform picker implements: photos in, labelled sets in, files out.

A picker copies what the user chose into its own cache folder (phones hand out content URIs,
not paths); the app deletes each copy as soon as it is graded (`release`), so patients' photos
do not pile up on the device. Exports leave through the platform's share sheet (`share_file`).
"""
from __future__ import annotations

import shutil
import time
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


@dataclass(frozen=True)
class ShareResult:
    """`shared`: the share sheet opened (the user chooses where the file goes); False: the file
    only stays where it was written (the screen says where). `error`: why sharing failed."""

    shared: bool = False
    error: str = ""


Callback = Callable[[PickResult], None]
ShareCallback = Callable[[ShareResult], None]


def _later(callback, value) -> None:
    from kivy.clock import Clock

    Clock.schedule_once(lambda _dt: callback(value), 0)


class PhotoPicker:
    """Pick a photo from the gallery or take one with the camera; choose a labelled set; share a file.

    Every method returns at once; its callback is called exactly once, later, on the UI thread
    (implementations use `Clock.schedule_once` when the platform answers on another thread).

    Args:
        cache_dir: where copies of chosen photos go (None: this picker makes no copies).
    """

    def __init__(self, cache_dir: str | Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def pick_photo(self, callback: Callback) -> None:
        """Let the user choose an existing photo."""
        raise NotImplementedError

    def take_photo(self, callback: Callback) -> None:
        """Let the user take a new photo with the camera."""
        raise NotImplementedError

    def pick_labels(self, callback: Callback) -> None:
        """Let the user choose a labels CSV (``image,grade,patient``, photo paths relative to it),
        or what `mobile_app.labelset.unpack` turns into one. The default says the platform cannot."""
        _later(callback, PickResult(error="choosing a labels file is not available on this device"))

    def share_file(self, path: str | Path, mime: str, callback: ShareCallback) -> None:
        """Offer a file to other apps (email, messaging, drive). The default only keeps it where it is."""
        _later(callback, ShareResult(shared=False))

    def export_dir(self, default: Path) -> Path:
        """The folder exports are written to (a phone's must be one its share sheet can reach)."""
        return default

    @property
    def has_camera(self) -> bool:
        """Whether `take_photo` can work here (the Diagnose screen disables the button if not)."""
        return False

    # ---- the cache of chosen photos ---------------------------------------------------------
    def cache_file(self, prefix: str, suffix: str = ".jpg") -> Path:
        """A new file name in the cache (the folder is created)."""
        assert self.cache_dir is not None, "this picker keeps no cache"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            candidate = self.cache_dir / f"{prefix}-{stamp}-{n}{suffix}"
            if not candidate.exists():
                return candidate
        raise OSError(f"{self.cache_dir}: no free file name")

    def owns(self, path: str | Path) -> bool:
        """Whether `path` is a copy this picker made (and so may delete)."""
        if self.cache_dir is None:
            return False
        try:
            Path(path).resolve().relative_to(self.cache_dir.resolve())
        except ValueError:
            return False
        return True

    def release(self, path: str | Path) -> None:
        """Delete the copy of a photo once it is graded (nothing happens to files the user owns)."""
        if path and self.owns(path):
            Path(path).unlink(missing_ok=True)

    def clear_cache(self) -> None:
        """Delete every copy left behind (e.g. by a crash); the app calls it at start."""
        if self.cache_dir is not None and self.cache_dir.is_dir():
            shutil.rmtree(self.cache_dir, ignore_errors=True)
