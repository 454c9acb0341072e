"""The model manifest (docs/CONTRACTS.md, "Manifest"): what a device needs to trust and run a model.

The manifest is signed over its exact bytes, so ``manifest_bytes`` fixes the serialisation
(UTF-8, 2-space indent, keys in contract order, trailing newline) and nothing rewrites it after.
"""
from __future__ import annotations

import json
import math
import tomllib
from datetime import datetime, timezone
from pathlib import Path

from edge_client.fileio import sha256_file
from edge_client.privacy_figures import round_up
from edge_client.quality import DEFAULTS as QUALITY_DEFAULTS
from export import ExportError

SCHEMA_VERSION = 1
DEFAULT_QUALITY = dict(QUALITY_DEFAULTS)
# The referral POLICY: export/clinical.py turns it into the manifest's "referral" block (threshold
# chosen for target_sensitivity unless `threshold` is set; uncertain band [threshold, + width)).
DEFAULT_REFERRAL = {"refer_at_grade": 2, "min_confidence": 0.6, "target_sensitivity": 0.9,
                    "uncertain_width": 0.25, "ungradable_attempts": 3, "threshold": None}
_INTEGER_KEYS = {"refer_at_grade", "ungradable_attempts"}
_RANGES = {"refer_at_grade": (1, 4), "min_confidence": (0.0, 1.0), "target_sensitivity": (0.5, 1.0),
           "uncertain_width": (0.0, 1.0), "ungradable_attempts": (1, 20), "threshold": (0.0, 1.0)}
PRIVATE_MODES = {"dopamine", "central-dp", "fl-parallel-dp"}


def _finite(value):
    """JSON has no NaN/inf: metrics that are undefined become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_policy(toml_path: str | Path | None, *, overrides: dict | None = None) -> tuple[dict, dict]:
    """Photo-quality thresholds and the referral rule: contract defaults, a TOML file, then flags.

    Args:
        toml_path: optional TOML with ``[quality]`` and/or ``[referral]`` tables (known keys only).
        overrides: ``{"quality": {...}, "referral": {...}}`` from command-line flags (None = unset).

    Returns:
        (quality dict, referral dict).

    Raises:
        ExportError: unreadable TOML, an unknown key, or a value of the wrong type or range.
    """
    quality, referral = dict(DEFAULT_QUALITY), dict(DEFAULT_REFERRAL)
    layers = []
    if toml_path is not None:
        path = Path(toml_path)
        try:
            layers.append((str(path), tomllib.loads(path.read_text())))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ExportError(f"{path}: cannot read policy TOML ({exc})") from exc
    if overrides:
        layers.append(("command line", overrides))
    for source, layer in layers:
        unknown = sorted(set(layer) - {"quality", "referral"})
        if unknown:
            raise ExportError(f"{source}: unknown section(s) {unknown}; allowed: quality, referral")
        for section, target in (("quality", quality), ("referral", referral)):
            for key, value in (layer.get(section) or {}).items():
                if key not in target:
                    raise ExportError(f"{source}: unknown {section} key {key!r}; allowed: {sorted(target)}")
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ExportError(f"{source}: {section}.{key} must be a number, got {value!r}")
                if key in _INTEGER_KEYS and value != int(value):
                    raise ExportError(f"{source}: {section}.{key} must be an integer, got {value!r}")
                target[key] = int(value) if key in _INTEGER_KEYS else float(value)
    for key, (lo, hi) in _RANGES.items():
        if referral[key] is not None and not lo <= referral[key] <= hi:
            raise ExportError(f"referral.{key} must be in [{lo}, {hi}], got {referral[key]}")
    if not quality["min_brightness"] < quality["max_brightness"]:
        raise ExportError("quality.min_brightness must be below quality.max_brightness")
    return quality, referral


def privacy_block(checkpoint: dict, *, allow_seeded: bool = False) -> dict:
    """ε (rounded up), δ, accountant and privacy model from the checkpoint, and whether it is a
    test build. Non-private modes get None values.

    Args:
        checkpoint: the loaded checkpoint dict.
        allow_seeded: export a checkpoint trained with a test-only noise seed anyway, marked
            ``test_build`` (every device shows "no DP guarantee: test build" instead of ε).
    Raises:
        ExportError: a private checkpoint without ε, or a seeded one without ``allow_seeded``.
    """
    privacy = checkpoint.get("privacy") or {}
    private = checkpoint.get("mode") in PRIVATE_MODES
    block = {key: privacy.get(key) if private else None for key in ("epsilon", "delta", "accountant")}
    block["privacy_model"] = privacy.get("privacy_model") if private else None
    if private and block["epsilon"] is None:
        raise ExportError(f"checkpoint of private mode {checkpoint.get('mode')!r} has no privacy.epsilon")
    if private and block["epsilon"] is not None and math.isfinite(block["epsilon"]):
        block["epsilon"] = round_up(block["epsilon"])
    seeded = bool(privacy.get("seeded"))
    if private and seeded and not allow_seeded:
        raise ExportError("checkpoint was trained with a test-only noise seed (--noise-seed): anyone with its "
                          "config can regenerate the noise, so it has NO privacy guarantee; refusing to export it "
                          "as private (pass --allow-seeded to export a test build marked 'no DP guarantee')")
    block["seeded"] = seeded
    block["test_build"] = bool(private and seeded)
    return block


def training_block(checkpoint: dict) -> dict:
    """Training mode, the round kept and the number of hospitals (None where not federated)."""
    config = checkpoint.get("config") or {}
    hospitals = config.get("hospitals", config.get("num_hospitals"))
    return {"mode": checkpoint["mode"], "rounds": int(checkpoint.get("round", 0)),
            "hospitals": int(hospitals) if isinstance(hospitals, (int, float)) else None}


def artifact_entry(path: Path, *, fmt: str, runtime: str, precision: str, tensors: dict) -> dict:
    """One ``artifacts`` entry: file name, format, runtime, precision, sha256, size and tensors."""
    return {"name": path.name, "format": fmt, "runtime": runtime, "precision": precision,
            "sha256": sha256_file(path), "size": path.stat().st_size,
            "inputs": tensors["inputs"], "outputs": tensors["outputs"]}


def build_manifest(checkpoint: dict, *, model_version: int, artifacts: list[dict], quality: dict,
                   referral: dict, created: str | None = None, calibration: dict | None = None,
                   ood: dict | None = None, allow_seeded: bool = False) -> dict:
    """Assemble the manifest dict in the contract's field order.

    Args:
        checkpoint: the loaded checkpoint dict.
        model_version: positive integer, monotonic across releases.
        artifacts: entries from ``artifact_entry``.
        quality: from ``load_policy``. referral: the rule (``export.clinical``: threshold, band,
            validation), or the bare policy for a bundle built without clinical figures.
        created: UTC timestamp (now when None).
        calibration, ood: the temperature and the public feature statistics (``export.clinical``).

    Returns:
        The manifest as a dict.
    """
    if isinstance(model_version, bool) or not isinstance(model_version, int) or model_version < 1:
        raise ExportError(f"--version must be a positive integer, got {model_version!r}")
    preprocess = dict(checkpoint["preprocess"])
    metrics = checkpoint.get("metrics") or {}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "model_version": model_version,
        "created": created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "arch": checkpoint["arch"],
        "class_names": list(checkpoint["class_names"]),
        "input_size": int(preprocess["image_size"]),
        "preprocess": preprocess,
        "quality": quality,
        "referral": _finite({k: v for k, v in referral.items() if v is not None}),
        **({"calibration": _finite(calibration)} if calibration else {}),
        "training": training_block(checkpoint),
        "privacy": privacy_block(checkpoint, allow_seeded=allow_seeded),
        "metrics": {split: _finite(values) for split, values in metrics.items() if isinstance(values, dict)},
        "artifacts": artifacts,
    }
    if ood:  # ~1000 numbers: last, so the fields people read come first
        manifest["ood"] = ood
    return manifest


def manifest_bytes(manifest: dict) -> bytes:
    """The exact bytes that are written and signed."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
