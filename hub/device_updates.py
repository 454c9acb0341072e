"""Device head updates at the hub: the hub's settings (hub.json), and checking one upload.

An update (docs/CONTRACTS.md "Device update") is JSON: the noised change of the head (5x512 and
5) and public constants. ``check_update`` refuses, with an HTTP status and one line: a body that
is not JSON or nested too deep (400), too large (413), of another format or shape, with a
non-finite value, a seeded (test) noise source, a δ not below 1/N for the hub's public cap N on
patients per device, an ε below what its own σ, q and steps cost, or a head change larger than
DP-SGD with its declared C, learning rate, steps and σ could have produced (422), or for a base
version other than the current one (409).
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import numpy as np

from edge_client.fileio import atomic_write
from edge_client.rdp import compute_epsilon
from hub.robust import ROBUST_MEANS, update_norm_bound

__all__ = ["UpdateRejected", "MAX_UPDATE_BYTES", "UPDATE_FORMAT", "DEFAULT_CONFIG", "read_config",
           "write_config", "install_signing_key", "signing_key_path", "check_update", "update_vector",
           "content_digest"]

UPDATE_FORMAT = "dopamine-head-update"
MAX_UPDATE_BYTES = 256 * 1024  # a 5x512 head change as JSON is ~55 KB
MAX_ABS_VALUE = 1e3            # a head change this large is broken, whatever its privacy
SHAPE = (5, 512)
DEFAULT_CONFIG = {
    "min_updates": 3,                  # distinct device tokens whose updates build a candidate
    "export_formats": "onnx,tflite,coreml", "export_args": [],
    "minimum_version": 0,              # devices refuse to install below it (in the signed index)
    "index_ttl_seconds": 86400,        # lifetime of each signed index (re-signed at half of it)
    "device_patient_cap": 10000,       # public cap N on patients per device: an update's δ must be < 1/N
    "rate_limit_per_minute": 12,       # uploads per token per minute (burst: the same number)
    # Public limits on a device round's constants (the device's RoundSettings must fit): the
    # norm bound below follows from them, so a device cannot widen it by declaring more.
    "max_clipping_norm": 1.0, "max_learning_rate": 0.1, "max_steps": 100, "max_noise_multiplier": 100.0,
    "min_batch_divisor": 1.0,          # public floor on a device's step divisor B (norm bound)
    "robust_mean": "norm-clipped",     # see hub/robust.py
    "auto_approve": False,             # publish a candidate without `hub approve` (needs validation_data)
    "validation_data": None,           # the hub's held-out labelled set (APTOS layout)
    "allow_seeded": False,             # build from a seeded (test) base checkpoint, marked test build
}
_TYPES = {"min_updates": int, "minimum_version": int, "index_ttl_seconds": int, "device_patient_cap": int,
          "rate_limit_per_minute": int, "min_batch_divisor": (int, float), "auto_approve": bool,
          "allow_seeded": bool, "export_formats": str, "max_clipping_norm": (int, float),
          "max_learning_rate": (int, float), "max_steps": int, "max_noise_multiplier": (int, float)}


class UpdateRejected(ValueError):
    """A refused upload: ``status`` is the HTTP status, the message one line for the device."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_config(root: Path) -> dict:
    """HUBDIR/hub.json over the defaults. Raises ValueError naming the file and the bad key."""
    path = Path(root) / "hub.json"
    config = dict(DEFAULT_CONFIG)
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: must hold a JSON object")
        unknown = sorted(set(loaded) - set(DEFAULT_CONFIG))
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(DEFAULT_CONFIG)}")
        config.update(loaded)
    for key, kind in _TYPES.items():
        value = config[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ValueError(f"{path}: {key} must be of type {getattr(kind, '__name__', 'number')}, got {value!r}")
    positive = ("min_updates", "index_ttl_seconds", "device_patient_cap", "rate_limit_per_minute", "max_steps")
    for key in positive:
        if config[key] < 1:
            raise ValueError(f"{path}: {key} must be >= 1, got {config[key]!r}")
    for key in ("max_clipping_norm", "max_learning_rate", "max_noise_multiplier"):
        if not 0 < config[key] < math.inf:
            raise ValueError(f"{path}: {key} must be a positive number, got {config[key]!r}")
    if config["minimum_version"] < 0 or not config["min_batch_divisor"] > 0:
        raise ValueError(f"{path}: minimum_version must be >= 0 and min_batch_divisor > 0")
    if config["robust_mean"] not in ROBUST_MEANS:
        raise ValueError(f"{path}: robust_mean must be one of {sorted(ROBUST_MEANS)}, got {config['robust_mean']!r}")
    if not isinstance(config["export_args"], list) or not all(isinstance(a, str) for a in config["export_args"]):
        raise ValueError(f"{path}: export_args must be a list of strings")
    if config["validation_data"] is not None and not isinstance(config["validation_data"], str):
        raise ValueError(f"{path}: validation_data must be a folder path or null")
    return config


def write_config(root: Path, **changes) -> dict:
    """Update HUBDIR/hub.json (atomic); None values are ignored. Returns the checked config."""
    config = read_config(root)
    config.update({k: v for k, v in changes.items() if v is not None})
    path = Path(root) / "hub.json"
    body = config
    previous = path.read_bytes() if path.exists() else None
    atomic_write(path, (json.dumps(body, indent=2) + "\n").encode())
    try:
        return read_config(root)
    except ValueError:
        if previous is None:
            path.unlink()
        else:
            atomic_write(path, previous)
        raise


def signing_key_path(root: Path) -> Path:
    return Path(root) / "private" / "signing.key"


def install_signing_key(root: Path, private_key: Path, publisher_key: bytes) -> Path:
    """Copy the export signing key under HUBDIR/private/ (0600), after checking it is the publisher's.

    Raises:
        ValueError: unreadable key, or one whose public half is not the hub's publisher key.
    """
    from export import ExportError
    from export.signing import load_publisher_private_key

    try:
        load_publisher_private_key(private_key, publisher_key)
    except ExportError as exc:
        raise ValueError(str(exc)) from None
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


def update_vector(payload: dict) -> np.ndarray:
    """The head change as one float64 vector: delta_weight (row-major) then delta_bias."""
    return np.concatenate([np.asarray(payload["delta_weight"], np.float64).ravel(),
                           np.asarray(payload["delta_bias"], np.float64)])


def content_digest(payload: dict) -> str:
    """sha256 of the head change itself (float32 bytes): the same change under other metadata is a replay."""
    import hashlib

    return hashlib.sha256(update_vector(payload).astype("<f4").tobytes()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _round_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    return compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)


def check_update(body: bytes, *, current_version: int | None, config: dict | None = None) -> dict:
    """Parse and check one upload. Returns the payload with ``_norm`` and ``_norm_bound`` added.

    Raises:
        UpdateRejected: with the HTTP status and the reason.
    """
    config = config or DEFAULT_CONFIG
    if len(body) > MAX_UPDATE_BYTES:
        raise UpdateRejected(413, f"update is {len(body)} bytes, over the {MAX_UPDATE_BYTES} byte limit")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UpdateRejected(400, "update is not valid JSON") from None
    except RecursionError:
        raise UpdateRejected(400, "update JSON is nested too deeply") from None
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
    if payload.get("seeded") or payload.get("test_build"):
        raise UpdateRejected(422, "update was trained with seeded (test) noise: 'seeded' must be false; "
                                  "it carries no DP guarantee")
    _matrix(payload.get("delta_weight"), SHAPE[0], SHAPE[1], "delta_weight")
    _matrix(payload.get("delta_bias"), SHAPE[0], None, "delta_bias")
    _number(payload, "steps", low=0, high=config["max_steps"], integer=True)
    _number(payload, "epsilon", low=0, high=1e3)
    cap = config["device_patient_cap"]
    _number(payload, "delta", low=0, high=0.1)
    if not payload["delta"] < 1.0 / cap:
        raise UpdateRejected(422, f"field 'delta' {payload['delta']:g} must be below 1/N = {1 / cap:g} for the "
                                  f"hub's public cap N = {cap} patients per device (hub.json device_patient_cap)")
    _number(payload, "sample_rate", low=0, high=1)
    _number(payload, "batch_divisor", low=0, high=1e6)
    if payload["batch_divisor"] < config["min_batch_divisor"]:
        raise UpdateRejected(422, f"field 'batch_divisor' {payload['batch_divisor']:g} is below the hub's floor "
                                  f"{config['min_batch_divisor']:g} (hub.json min_batch_divisor)")
    _number(payload, "max_patients", low=0, high=cap, integer=True)
    for key in ("noise_multiplier", "clipping_norm", "learning_rate"):
        _number(payload, key, low=0, high=config[f"max_{key}"])
    if payload.get("accountant") != "rdp":
        raise UpdateRejected(422, f"accountant must be 'rdp', got {payload.get('accountant')!r}")
    floor = _round_epsilon(float(payload["noise_multiplier"]), float(payload["sample_rate"]), int(payload["steps"]),
                           float(payload["delta"]))
    if payload["epsilon"] < floor * (1 - 1e-6):
        raise UpdateRejected(422, f"field 'epsilon' {payload['epsilon']:g} is below what its own sigma, q and steps "
                                  f"cost ({floor:.4g} by RDP): the declared guarantee is false")
    norm = float(np.linalg.norm(update_vector(payload)))
    bound = update_norm_bound(clipping_norm=payload["clipping_norm"], learning_rate=payload["learning_rate"],
                              steps=payload["steps"], noise_multiplier=payload["noise_multiplier"],
                              batch_divisor=float(payload["batch_divisor"]),
                              max_expected_batch=float(payload["sample_rate"]) * cap)
    if norm > bound:
        raise UpdateRejected(422, f"head change norm {norm:.4g} is over {bound:.4g}, the most DP-SGD with its declared "
                                  f"C, learning rate, steps and sigma can produce: refused")
    return {**payload, "_norm": norm, "_norm_bound": bound}
