"""The app's screens, one `<name>.py` + `<name>.kv` pair each, imported on first visit.

Screens hold no ML, disk or network code: they call the app (`App.get_running_app()`), which runs
`mobile_app.actions` in a worker thread and calls them back on the UI thread.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from kivy.lang import Builder
from kivy.uix.screenmanager import Screen

NAMES = ("home", "diagnose", "history", "train", "settings")
_DIR = Path(__file__).parent


def load_kv(module_file: str) -> None:
    """Load the kv file next to a screen module (called once, at the module's import)."""
    Builder.load_file(str(Path(module_file).with_suffix(".kv")))


def screen_class(name: str) -> type[Screen]:
    """Import `mobile_app.screens.<name>` and return its screen class.

    Raises:
        ValueError: an unknown screen name (the message lists the known ones).
    """
    if name not in NAMES:
        raise ValueError(f"unknown screen {name!r}; screens are {', '.join(NAMES)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return getattr(module, f"{name.capitalize()}Screen")
