"""Platform photo pickers behind one small interface (`PhotoPicker`).

`default_picker()` chooses the Android one on Android (imported only there: it needs pyjnius) and
the desktop file chooser elsewhere; tests pass their own fake to the app.
"""
from __future__ import annotations

from .base import PhotoPicker, PickResult


def default_picker() -> PhotoPicker:
    """The picker for the platform the app runs on."""
    from kivy.utils import platform

    if platform == "android":
        from .android import AndroidPicker
        return AndroidPicker()
    from .desktop import DesktopPicker
    return DesktopPicker()


__all__ = ["PhotoPicker", "PickResult", "default_picker"]
