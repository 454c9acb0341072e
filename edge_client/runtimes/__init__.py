"""Device runtimes behind one interface; ``select_runtime`` picks the best available.

Order: the platform's own runtime (TFLite Java on Android, Core ML on iOS), then LiteRT, then
ONNX Runtime; int8 artifacts before float ones. ``EDGE_RUNTIME=<name>`` forces one runtime.

Which platform this is: the app passes Kivy's answer in (``set_platform(kivy.utils.platform)``),
since kivy-ios's Python reports ``sys.platform == "darwin"`` on an iPhone; without it the same
signals ``kivy.utils.platform`` reads are read here (edge_client never imports Kivy).
"""
from __future__ import annotations

import os
import sys

PLATFORMS = ("android", "ios", "macosx", "win", "linux", "unknown")
_platform_override: str | None = None


def set_platform(name: str | None) -> None:
    """Tell the edge client which platform it runs on (None: detect it again).

    Args:
        name: one of PLATFORMS, as ``kivy.utils.platform`` spells it.

    Raises:
        ValueError: an unknown name (the message lists the allowed ones).
    """
    global _platform_override
    if name is not None and name not in PLATFORMS:
        raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}; got {name!r}")
    _platform_override = name


def current_platform() -> str:
    """The platform set by ``set_platform``, else detected like ``kivy.utils.platform`` does:
    ``KIVY_BUILD`` (kivy-ios and python-for-android set it), ``P4A_BOOTSTRAP`` or
    ``ANDROID_ARGUMENT`` (python-for-android), then ``sys.platform``."""
    if _platform_override is not None:
        return _platform_override
    build = os.environ.get("KIVY_BUILD", "")
    if build in ("android", "ios"):
        return build
    if "P4A_BOOTSTRAP" in os.environ or "ANDROID_ARGUMENT" in os.environ:
        return "android"
    if sys.platform == "ios":      # CPython 3.13+ built for iOS says so itself
        return "ios"
    if sys.platform in ("win32", "cygwin"):
        return "win"
    if sys.platform == "darwin":
        return "macosx"
    if sys.platform.startswith(("linux", "freebsd")):
        return "linux"
    return "unknown"


# The adapters import current_platform from here: define it before importing them.
from edge_client.errors import NoCompatibleArtifact  # noqa: E402
from edge_client.runtimes.android import AndroidTFLiteRuntime  # noqa: E402
from edge_client.runtimes.base import Runtime  # noqa: E402
from edge_client.runtimes.ios import IOSCoreMLRuntime  # noqa: E402
from edge_client.runtimes.litert import LiteRTRuntime  # noqa: E402
from edge_client.runtimes.onnx import OnnxRuntime  # noqa: E402

__all__ = ["Runtime", "RUNTIMES", "PLATFORMS", "available_runtimes", "current_platform", "runtime_for",
           "select_runtime", "set_platform"]

RUNTIMES: list[type[Runtime]] = [AndroidTFLiteRuntime, IOSCoreMLRuntime, LiteRTRuntime, OnnxRuntime]


def available_runtimes() -> list[type[Runtime]]:
    """Runtimes importable here, best first (``EDGE_RUNTIME`` narrows to one)."""
    forced = os.environ.get("EDGE_RUNTIME")
    found = [r for r in RUNTIMES if r.available()]
    if forced:
        found = [r for r in found if r.name == forced]
    return found


def select_runtime(artifacts: list[dict], runtimes: list[type[Runtime]] | None = None) -> tuple[type[Runtime], dict]:
    """Pick the best (runtime, artifact) pair for this device.

    Args:
        artifacts: the manifest's ``artifacts``. runtimes: candidates (default: available here).

    Returns:
        (runtime class, artifact entry).

    Raises:
        NoCompatibleArtifact: no artifact matches an available runtime.
    """
    runtimes = available_runtimes() if runtimes is None else runtimes
    for runtime in runtimes:
        matches = [a for a in artifacts if a.get("runtime") == runtime.artifact_runtime]
        matches.sort(key=lambda a: a.get("precision") != "int8")  # int8 first
        if matches:
            return runtime, matches[0]
    offered = sorted({a.get("runtime", "?") for a in artifacts})
    names = [r.name for r in runtimes] or ["none"]
    raise NoCompatibleArtifact(f"the manifest offers runtimes {offered}, this device has {names}")


def runtime_for(artifact: dict) -> type[Runtime]:
    """The best available runtime class able to run an installed artifact."""
    return select_runtime([artifact])[0]
