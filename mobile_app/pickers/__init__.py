"""Platform pickers behind one small interface (`PhotoPicker`).

`default_picker()` chooses by `kivy.utils.platform`: Android (pyjnius; imported only there),
iOS (pyobjus, kivy-ios's conventions; imported only there), else the desktop file chooser.
Tests pass their own picker to the app.
"""
from __future__ import annotations

from pathlib import Path

from .base import PhotoPicker, PickResult, ShareResult


def default_picker(cache_root: str | Path) -> PhotoPicker:
    """The picker for the platform the app runs on.

    Args:
        cache_root: the app's cache folder on a desktop (phones use their own cache folders).
    """
    from kivy.utils import platform

    if platform == "android":
        from .android import AndroidPicker
        return AndroidPicker()
    if platform == "ios":
        from .ios import IOSPicker
        return IOSPicker()
    from .desktop import DesktopPicker
    return DesktopPicker(cache_dir=Path(cache_root) / "picked")


__all__ = ["PhotoPicker", "PickResult", "ShareResult", "default_picker"]
