"""Device head updates at the hub: the hub's aggregation settings, and checking one upload.

An update (docs/CONTRACTS.md "Device update") is JSON: the noised change of the head (5x512 and
5) and public constants. ``check_update`` refuses, with an HTTP status and one line: a body that
is not JSON (400), too large (413), of another format or shape, with a non-finite value (422),
or for a base version other than the current one (409).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from edge_client.fileio import atomic_write

__all__ = ["UpdateRejected", "MAX_UPDATE_BYTES", "UPDATE_FORMAT", "DEFAULT_CONFIG", "read_config",
           "write_config", "install_signing_key", "signing_key_path", "check_update"]

UPDATE_FORMAT = "dopamine-head-update"
MAX_UPDATE_BYTES = 256 * 1024  # a 5x512 head change as JSON is ~55 KB
MAX_ABS_VALUE = 1e3            # a head change this large is broken, whatever its privacy
SHAPE = (5, 512)
DEFAULT_CONFIG = {"min_updates": 3, "export_formats": "onnx,tflite,coreml", "export_args": []}


class UpdateRejected(ValueError):
    """A refused upload: ``status`` is the HTTP status, the message one line for the device."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_config(root: Path) -> dict:
    """HUBDIR/hub.json over the defaults. Raises ValueError naming the file on a bad value."""
    path = Path(root) / "hub.json"
    config = dict(DEFAULT_CONFIG)
    if path.exists():
        try:
            config.update(json.loads(path.read_text()))
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config["min_updates"], int) or config["min_updates"] < 1:
        raise ValueError(f"{path}: min_updates must be an integer >= 1, got {config['min_updates']!r}")
    if not isinstance(config["export_args"], list) or not all(isinstance(a, str) for a in config["export_args"]):
        raise ValueError(f"{path}: export_args must be a list of strings")
    return config


def write_config(root: Path, **changes) -> dict:
    """Update HUBDIR/hub.json (atomic); None values are ignored. Returns the checked config."""
    config = read_config(root)
    config.update({k: v for k, v in changes.items() if v is not None})
    path = Path(root) / "hub.json"
    atomic_write(path, (json.dumps(config, indent=2) + "\n").encode())
    return read_config(root)


def signing_key_path(root: Path) -> Path:
    return Path(root) / "private" / "signing.key"


def install_signing_key(root: Path, private_key: Path, publisher_key: bytes) -> Path:
    """Copy the export signing key under HUBDIR/private/ (0600), after checking it is the publisher's.

    Raises:
        ValueError: unreadable key, or one whose public half is not the hub's publisher key.
    """
    from export import ExportError
    from export.signing import load_private_key

    try:
        signing = load_private_key(private_key)
    except (ExportError, OSError) as exc:
        raise ValueError(f"{private_key}: not a usable private key ({exc})") from None
    if bytes(signing.verify_key) != publisher_key:
        raise ValueError(f"{private_key}: its public key is not the hub's publisher key: devices would refuse "
                         f"the versions it signs")
    folder = Path(root) / "private"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    path = signing_key_path(root)
    atomic_write(path, Path(private_key).read_bytes(), mode=0o600)
    return path


def _number(payload: dict, key: str, *, low: float, high: float = math.inf, integer: bool = False) -> None:
    value = payload.get(key)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or not low < value <= high:
        raise UpdateRejected(422, f"field {key!r} must be a finite {'integer' if integer else 'number'} "
                                  f"in ({low:g}, {high:g}], got {value!r}")


def _matrix(value, rows: int, cols: int | None, key: str) -> None:
    shape = f"{rows}x{cols}" if cols else str(rows)
    if not isinstance(value, list) or len(value) != rows:
        raise UpdateRejected(422, f"field {key!r} must be a list of shape {shape}")
    for row in value:
        items = row if cols else [row]
        if cols and (not isinstance(row, list) or len(row) != cols):
            raise UpdateRejected(422, f"field {key!r} must be a list of shape {shape}")
        for x in items:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise UpdateRejected(422, f"field {key!r} holds a non-finite or non-numeric value")
            if abs(x) > MAX_ABS_VALUE:
                raise UpdateRejected(422, f"field {key!r} holds a value over {MAX_ABS_VALUE:g} in magnitude")


def check_update(body: bytes, *, current_version: int | None) -> dict:
    """Parse and check one upload. Returns the payload.

    Raises:
        UpdateRejected: with the HTTP status and the reason.
    """
    if len(body) > MAX_UPDATE_BYTES:
        raise UpdateRejected(413, f"update is {len(body)} bytes, over the {MAX_UPDATE_BYTES} byte limit")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UpdateRejected(400, "update is not valid JSON") from None
    if not isinstance(payload, dict) or payload.get("format") != UPDATE_FORMAT:
        raise UpdateRejected(422, f"update must be a JSON object with format {UPDATE_FORMAT!r}")
    if payload.get("format_version") != 1:
        raise UpdateRejected(422, f"format_version {payload.get('format_version')!r} is not supported (1)")
    base = payload.get("base_version")
    if isinstance(base, bool) or not isinstance(base, int):
        raise UpdateRejected(422, "field 'base_version' must be an integer")
    if current_version is None:
        raise UpdateRejected(409, "the hub has no published version to update")
    if base != current_version:
        raise UpdateRejected(409, f"update is for version {base}, the current version is {current_version}: "
                                  f"sync, then train again")
    _matrix(payload.get("delta_weight"), SHAPE[0], SHAPE[1], "delta_weight")
    _matrix(payload.get("delta_bias"), SHAPE[0], None, "delta_bias")
    _number(payload, "steps", low=0, high=1e7, integer=True)
    _number(payload, "epsilon", low=0, high=1e3)
    _number(payload, "delta", low=0, high=0.1)
    for key in ("noise_multiplier", "sample_rate", "clipping_norm", "learning_rate"):
        _number(payload, key, low=0, high=1 if key == "sample_rate" else 1e6)
    if payload.get("accountant") != "rdp":
        raise UpdateRejected(422, f"accountant must be 'rdp', got {payload.get('accountant')!r}")
    return payload
