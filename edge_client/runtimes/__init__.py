"""Device runtimes behind one interface; ``select_runtime`` picks the best available.

Order: the platform's own runtime (TFLite Java on Android, Core ML on iOS), then LiteRT, then
ONNX Runtime; int8 artifacts before float ones. ``EDGE_RUNTIME=<name>`` forces one runtime.
"""
from __future__ import annotations

import os

from edge_client.errors import NoCompatibleArtifact
from edge_client.runtimes.android import AndroidTFLiteRuntime
from edge_client.runtimes.base import Runtime
from edge_client.runtimes.ios import IOSCoreMLRuntime
from edge_client.runtimes.litert import LiteRTRuntime
from edge_client.runtimes.onnx import OnnxRuntime

__all__ = ["Runtime", "RUNTIMES", "available_runtimes", "select_runtime", "runtime_for"]

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
