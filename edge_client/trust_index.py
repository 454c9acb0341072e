"""The signed model index: which versions a device may install, and until when that list holds.

Verification only, no I/O (like python-tuf's ``trusted_metadata_set``): ``sync.py`` fetches the
bytes, this module decides whether to trust them, ``store.py`` keeps what was trusted.

Two signed documents, TUF's root and timestamp ideas cut to what a model hub needs:

``root.json`` (+ ``root.sig``), signed by the publisher key the device pinned. It delegates the
index to an *index key* the hub holds online, so the publisher key can stay offline::

    {"format": "dopamine-root", "format_version": 1, "version": 2, "created": "...Z",
     "index_key": "<base64 raw 32-byte Ed25519 public key>"}

``index.json`` (+ ``index.sig``), signed by the index key, short-lived (the hub re-signs it)::

    {"format": "dopamine-index", "format_version": 1, "serial": 41,
     "issued": "2026-11-28T18:00:00Z", "expires": "2026-11-29T18:00:00Z",
     "latest": 3, "minimum": 2, "withdrawn": [4],
     "manifests": {"2": "<sha256 of manifest.json>", "3": "<sha256>"}}

The device refuses: a root or index whose signature does not verify; a root version below the
highest it trusted (an old delegation); an index serial below the highest it trusted (a replayed
list), or the same serial with other bytes; an expired index (a frozen list: an attacker holding
the device on an old version, or hiding a withdrawal); a target that is withdrawn, below the
minimum, below the highest version it ever trusted, or whose manifest bytes are not the ones the
index names. Signatures: Ed25519 over the exact bytes, base64 of the raw 64 bytes on one line.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from edge_client import ed25519
from edge_client.manifest import ManifestError, decode_signature, encode_key, is_sha256, parse_public_key

__all__ = ["ROOT_FORMAT", "INDEX_FORMAT", "MAX_ROOT_BYTES", "MAX_INDEX_BYTES", "IndexTrustError", "IndexExpired",
           "IndexRollback", "VersionRefused", "Root", "TrustIndex", "verify_root", "verify_index",
           "choose_target", "check_manifest", "freshness", "parse_time", "format_time"]

ROOT_FORMAT = "dopamine-root"
INDEX_FORMAT = "dopamine-index"
MAX_ROOT_BYTES = 16_384
MAX_INDEX_BYTES = 1_000_000
_TIME = "%Y-%m-%dT%H:%M:%SZ"


class IndexTrustError(ValueError):
    """A root or index that cannot be trusted; the message is one line naming what and why."""


class IndexExpired(IndexTrustError):
    """The index is past its expiry: the device's view of withdrawn and latest versions is unknown."""


class IndexRollback(IndexTrustError):
    """An older root or index than one the device already trusted (a replay)."""


class VersionRefused(IndexTrustError):
    """The index (or the device's own history) forbids installing this version."""


def parse_time(text: object, *, field_name: str, source: str) -> datetime:
    """``YYYY-MM-DDTHH:MM:SSZ`` -> aware UTC datetime. Raises IndexTrustError naming the field."""
    try:
        return datetime.strptime(str(text), _TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        raise IndexTrustError(f"{source}: field {field_name!r} must be a UTC time like 2026-11-28T18:00:00Z, "
                              f"got {text!r}") from None


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(_TIME)


@dataclass(frozen=True)
class Root:
    """A verified root: its version and the index key it delegates to."""

    version: int
    index_key: bytes
    sha256: str


@dataclass(frozen=True)
class TrustIndex:
    """A verified index (see the module docstring for the fields)."""

    serial: int
    issued: datetime
    expires: datetime
    latest: int | None
    minimum: int
    withdrawn: frozenset[int]
    manifests: dict[int, str] = field(default_factory=dict)
    sha256: str = ""


def _load(data: bytes, sig: bytes, key: bytes, *, cap: int, fmt: str, source: str) -> dict:
    if len(data) > cap:
        raise IndexTrustError(f"{source}: {len(data)} bytes exceeds the {cap}-byte cap")
    try:
        signature = decode_signature(sig, source=f"{source} signature")
    except ManifestError as exc:
        raise IndexTrustError(str(exc)) from None
    if not ed25519.verify(key, data, signature):
        raise IndexTrustError(f"{source}: signature does not verify under key {encode_key(key)[:12]}... "
                              f"(tampered, or signed by another key)")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise IndexTrustError(f"{source}: not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise IndexTrustError(f"{source}: not a {fmt!r} document")
    if doc.get("format_version") != 1:
        raise IndexTrustError(f"{source}: format_version {doc.get('format_version')!r} is not supported (1)")
    return doc


def _int(doc: dict, key: str, source: str, *, low: int = 0, optional: bool = False) -> int | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise IndexTrustError(f"{source}: field {key!r} must be an integer >= {low}, got {value!r}")
    return value


def verify_root(data: bytes, sig: bytes, publisher_key: bytes, *, trusted_version: int | None = None,
                source: str = "root.json") -> Root:
    """Check a root under the pinned publisher key and against the highest root version trusted.

    Returns:
        The Root (version, index key, sha256 of the bytes).

    Raises:
        IndexTrustError: bad signature, format or field. IndexRollback: version below ``trusted_version``.
    """
    doc = _load(data, sig, publisher_key, cap=MAX_ROOT_BYTES, fmt=ROOT_FORMAT, source=source)
    version = _int(doc, "version", source, low=1)
    if trusted_version is not None and version < trusted_version:
        raise IndexRollback(f"{source}: root version {version} is older than version {trusted_version} this device "
                            f"already trusts (a replayed delegation): refused")
    try:
        index_key = parse_public_key(str(doc.get("index_key", "")), source=f"{source} index_key")
    except ManifestError as exc:
        raise IndexTrustError(str(exc)) from None
    return Root(version, index_key, hashlib.sha256(data).hexdigest())


def verify_index(data: bytes, sig: bytes, root: Root, *, now: datetime, trusted_serial: int | None = None,
                 trusted_sha256: str | None = None, source: str = "index.json") -> TrustIndex:
    """Check an index under the root's index key, its expiry and its serial.

    Args:
        data, sig: index.json and index.sig bytes. root: the verified root. now: aware UTC time.
        trusted_serial, trusted_sha256: the last index this device trusted (None: first sync).

    Raises:
        IndexTrustError (bad signature, format, field), IndexExpired, IndexRollback.
    """
    doc = _load(data, sig, root.index_key, cap=MAX_INDEX_BYTES, fmt=INDEX_FORMAT, source=source)
    serial = _int(doc, "serial", source, low=1)
    issued = parse_time(doc.get("issued"), field_name="issued", source=source)
    expires = parse_time(doc.get("expires"), field_name="expires", source=source)
    latest = _int(doc, "latest", source, low=1, optional=True)
    minimum = _int(doc, "minimum", source, low=0)
    withdrawn = doc.get("withdrawn")
    if not isinstance(withdrawn, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in withdrawn):
        raise IndexTrustError(f"{source}: field 'withdrawn' must be a list of version numbers")
    manifests = doc.get("manifests")
    if not isinstance(manifests, dict) or not all(k.isdigit() and is_sha256(v) for k, v in manifests.items()):
        raise IndexTrustError(f"{source}: field 'manifests' must map version numbers to sha256 hex digests")
    digest = hashlib.sha256(data).hexdigest()
    if trusted_serial is not None:
        if serial < trusted_serial:
            raise IndexRollback(f"{source}: serial {serial} is older than serial {trusted_serial} this device "
                                f"already trusts (a replayed model list): refused")
        if serial == trusted_serial and trusted_sha256 and digest != trusted_sha256:
            raise IndexRollback(f"{source}: a different model list with the same serial {serial}: refused")
    if now >= expires:
        raise IndexExpired(f"{source}: the hub's signed model list expired at {format_time(expires)} (now "
                           f"{format_time(now)}): refused; a stale list could hide a withdrawn version")
    index = TrustIndex(serial, issued, expires, latest, minimum, frozenset(withdrawn),
                       {int(k): v for k, v in manifests.items()}, digest)
    if latest is not None and (latest in index.withdrawn or latest < minimum or latest not in index.manifests):
        raise IndexTrustError(f"{source}: inconsistent: latest version {latest} is withdrawn, below the minimum "
                              f"{minimum}, or has no manifest hash")
    return index


def choose_target(index: TrustIndex, *, highest_trusted: int | None) -> int:
    """The version to install: the index's latest, if this device may take it.

    Raises:
        VersionRefused: no version, or the latest is below the highest version this device ever
        trusted (a downgrade: kept across rollbacks and an unreadable ``current``).
    """
    if index.latest is None:
        raise VersionRefused("the hub's signed model list names no version to install yet")
    if highest_trusted is not None and index.latest < highest_trusted:
        raise VersionRefused(f"the hub offers model version {index.latest}, older than version {highest_trusted} "
                             f"this device already trusted: refused (downgrade)")
    return index.latest


def check_manifest(index: TrustIndex, version: int, manifest_bytes: bytes) -> None:
    """The manifest fetched for ``version`` must be the exact bytes the index names.

    Raises:
        VersionRefused: withdrawn, below the minimum, or not listed. IndexTrustError: other bytes.
    """
    if version in index.withdrawn:
        raise VersionRefused(f"model version {version} was withdrawn by the publisher: refused")
    if version < index.minimum:
        raise VersionRefused(f"model version {version} is below the minimum allowed version {index.minimum}: refused")
    expected = index.manifests.get(version)
    if expected is None:
        raise VersionRefused(f"model version {version} is not in the hub's signed model list: refused")
    if hashlib.sha256(manifest_bytes).hexdigest() != expected:
        raise IndexTrustError(f"the manifest served for version {version} is not the one the signed model list "
                              f"names (tampered, or mixed from another hub): refused")


def freshness(issued: datetime, expires: datetime, now: datetime) -> str:
    """"fresh" (under half its lifetime used), "stale" (over half: sync soon) or "expired"."""
    if now >= expires:
        return "expired"
    life = (expires - issued).total_seconds()
    used = (now - issued).total_seconds()
    return "stale" if life <= 0 or used > life / 2 or math.isnan(used) else "fresh"
