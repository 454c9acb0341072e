"""Where the device keeps its state: --home, else $EDGE_HOME, else the platform's app-data folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "dopamine-edge"


def default_home() -> Path:
    """The platform's per-user app-data folder for the edge client."""
    if "ANDROID_PRIVATE" in os.environ:  # python-for-android: the app's private storage
        return Path(os.environ["ANDROID_PRIVATE"]) / APP
    if sys.platform == "ios":
        return Path.home() / "Library" / "Application Support" / APP
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / APP
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / APP


def resolve_home(home: str | Path | None = None) -> Path:
    """Args: home: explicit folder or None. Returns: the state folder (not created)."""
    if home:
        return Path(home).expanduser()
    if os.environ.get("EDGE_HOME"):
        return Path(os.environ["EDGE_HOME"]).expanduser()
    return default_home()
