"""Manifest trust: keys, signature check and schema check. No I/O beyond reading a key file.

Like python-tuf's trusted metadata set: this module only decides whether bytes are trusted;
downloading and installing live in ``fetcher.py`` and ``store.py``.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from pathlib import Path

from edge_client import ed25519
from edge_client.ood import FeatureStats
from edge_client.referral import ReferralRule, temperature_of

__all__ = ["ManifestError", "parse_public_key", "read_public_key", "decode_signature",
           "verify_manifest", "validate_manifest", "manifest_etag", "SAFE_NAME", "RESERVED_NAMES",
           "is_safe_name", "is_sha256"]

SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 1_000_000
MAX_SIG_BYTES = 1_000
# Artifact names are plain file names: no separators, no leading dot (no "..", no hidden files).
# Always use fullmatch (``is_safe_name``): "$" in ``match`` also accepts a trailing newline.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Files the hub and the device keep beside an artifact: an artifact named like one would
# overwrite it. Compared case-folded (iOS and macOS file systems ignore case).
RESERVED_NAMES = frozenset({"manifest.json", "manifest.sig", "installed.json", "model_card.md", "report.md",
                            "report.json", "root.json", "root.sig", "index.json", "index.sig", "current"})
_RUNTIMES = {"litert", "onnxruntime", "coreml"}


class ManifestError(ValueError):
    """A manifest, signature or key that cannot be trusted; the message names what and why."""


def parse_public_key(text: str | bytes, *, source: str = "public key") -> bytes:
    """Decode a base64 raw 32-byte Ed25519 public key. Raises ManifestError naming ``source``."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(f"{source}: not base64") from None
    if len(raw) != ed25519.KEY_BYTES:
        raise ManifestError(f"{source}: expected a 32-byte Ed25519 key, got {len(raw)} bytes")
    return raw


def read_public_key(value: str | Path) -> bytes:
    """A key given as a file path (``public.key``) or as the base64 text itself."""
    path = Path(value)
    try:
        if path.is_file():
            return parse_public_key(path.read_text(encoding="ascii", errors="replace"), source=str(path))
    except OSError:
        pass
    return parse_public_key(str(value), source="--key")


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_signature(data: bytes, *, source: str = "manifest.sig") -> bytes:
    """manifest.sig: one line of base64 holding the raw 64-byte signature."""
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(f"{source}: not base64") from None
    if len(raw) != ed25519.SIG_BYTES:
        raise ManifestError(f"{source}: expected a 64-byte signature, got {len(raw)} bytes")
    return raw


def is_safe_name(name: object) -> bool:
    """A plain file name (whole string, no trailing newline) that is not a reserved one."""
    return (isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None
            and name.casefold() not in RESERVED_NAMES)


def is_sha256(value: object) -> bool:
    """64 lowercase hex digits, the whole string."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def manifest_etag(data: bytes) -> str:
    """The strong ETag the hub sends for a manifest (and a device can compute for its own)."""
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def verify_manifest(data: bytes, sig: bytes, public_key: bytes, *, source: str = "manifest") -> dict:
    """Check the signature over the exact bytes, then parse and validate.

    Args:
        data: manifest.json bytes. sig: manifest.sig bytes. public_key: raw 32 bytes.
        source: name used in error messages.

    Returns:
        The validated manifest dict.

    Raises:
        ManifestError: bad signature (e.g. signed by another key), bad JSON or bad fields.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{source}: {len(data)} bytes exceeds the {MAX_MANIFEST_BYTES}-byte cap")
    signature = decode_signature(sig, source=f"{source}.sig")
    if not ed25519.verify(public_key, data, signature):
        raise ManifestError(f"{source}: signature does not verify under the pinned key "
                            f"{encode_key(public_key)[:12]}... (tampered, or signed by another key)")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{source}: not UTF-8 JSON ({exc})") from None
    return validate_manifest(manifest, source=source)


def _need(d: dict, key: str, kind, source: str):
    if key not in d:
        raise ManifestError(f"{source}: missing field {key!r}")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"{source}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def validate_manifest(manifest: object, *, source: str = "manifest") -> dict:
    """Check the fields the hub and the device rely on (see docs/CONTRACTS.md "Manifest").

    Raises:
        ManifestError: naming the first bad field.
    """
    if not isinstance(manifest, dict):
        raise ManifestError(f"{source}: top level must be a JSON object")
    if _need(manifest, "schema_version", int, source) != SCHEMA_VERSION:
        raise ManifestError(f"{source}: schema_version {manifest['schema_version']} is not supported "
                            f"(this client reads {SCHEMA_VERSION})")
    if _need(manifest, "model_version", int, source) < 1:
        raise ManifestError(f"{source}: model_version must be a positive integer")
    names = _need(manifest, "class_names", list, source)
    if len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"{source}: class_names must list at least two strings")
    _need(manifest, "preprocess", dict, source)
    _need(manifest, "input_size", int, source)
    for key in ("quality", "referral", "privacy", "calibration", "ood"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise ManifestError(f"{source}: field {key!r} must be an object")
    try:  # the screening rule, calibration and feature statistics a device will apply
        ReferralRule.from_manifest(manifest)
        temperature_of(manifest)
        if manifest.get("ood"):
            FeatureStats.from_block(manifest["ood"])
    except ValueError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    artifacts = _need(manifest, "artifacts", list, source)
    if not artifacts:
        raise ManifestError(f"{source}: no artifacts")
    seen = set()
    for i, art in enumerate(artifacts):
        where = f"{source}: artifacts[{i}]"
        if not isinstance(art, dict):
            raise ManifestError(f"{where} must be an object")
        name = _need(art, "name", str, where)
        if not is_safe_name(name) or name.casefold() in seen:
            raise ManifestError(f"{where}: name {name!r} is not a plain, unique, non-reserved file name "
                                f"(reserved: {', '.join(sorted(RESERVED_NAMES))})")
        seen.add(name.casefold())
        if not is_sha256(art.get("sha256")):
            raise ManifestError(f"{where} ({name}): sha256 must be 64 lowercase hex digits")
        if _need(art, "size", int, where) <= 0:
            raise ManifestError(f"{where} ({name}): size must be positive")
        if _need(art, "runtime", str, where) not in _RUNTIMES:
            raise ManifestError(f"{where} ({name}): runtime must be one of {sorted(_RUNTIMES)}")
        inputs = _need(art, "inputs", list, where)
        if not inputs or not isinstance(inputs[0], dict):
            raise ManifestError(f"{where} ({name}): inputs must describe the input tensor")
    return manifest
