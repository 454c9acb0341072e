"""The hub's side of the signed model list (formats: edge_client/trust_index.py).

- ``delegate``: the publisher's private key signs ``root.json``, naming the hub's online index
  key (created here, ``private/index.key``, 0600). Run once at setup (``hub init --signing-key``
  or ``hub delegate``); again with ``rotate=True`` to replace the index key (a new root version).
  The publisher key can then stay offline.
- ``signed_index``: the current ``index.json`` and its signature, re-signed with the index key
  whenever what it says changed (a publish, withdrawal, approval or new minimum) or half its
  lifetime has passed. Its serial only grows (max of the last + 1 and the Unix time).

Both are stored as one file each under ``trust/`` ({"document": base64, "signature": line}), so
a reader never pairs a document with another one's signature.
"""
from __future__ import annotations

import base64
import fcntl
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge_client.fileio import atomic_write
from edge_client.manifest import encode_key
from edge_client.trust_index import INDEX_FORMAT, ROOT_FORMAT, format_time, parse_time
from hub.device_updates import read_config
from hub.registry import HubError, Registry

__all__ = ["delegate", "signed_root", "signed_index", "index_key_path", "has_index"]


def index_key_path(root: Path) -> Path:
    return Path(root) / "private" / "index.key"


def _signed_path(root: Path, name: str) -> Path:
    return Path(root) / "trust" / f"{name}.signed.json"


def _read_signed(path: Path) -> tuple[bytes, bytes] | None:
    try:
        doc = json.loads(path.read_text())
        return base64.b64decode(doc["document"]), doc["signature"].encode("ascii")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HubError(f"{path}: damaged ({type(exc).__name__}); run `python -m hub delegate` again") from None


def _write_signed(path: Path, data: bytes, sig: bytes) -> None:
    body = {"document": base64.b64encode(data).decode("ascii"), "signature": sig.decode("ascii").strip()}
    atomic_write(path, (json.dumps(body) + "\n").encode())


def _sign(data: bytes, key_path: Path) -> bytes:
    from export.signing import sign_manifest  # Ed25519 over the exact bytes, one base64 line

    return sign_manifest(data, key_path)


def has_index(root: Path) -> bool:
    return _signed_path(root, "root").is_file() and index_key_path(root).is_file()


def delegate(root: Path, publisher_private_key: Path, *, rotate: bool = False) -> int:
    """Sign a root naming the index key (made now if missing, or replaced when ``rotate``).

    Returns:
        The new root version.

    Raises:
        HubError: the private key is unreadable or is not the hub's publisher key.
    """
    from export import ExportError
    from export.signing import generate_private_key, load_private_key, load_publisher_private_key

    root = Path(root)
    reg = Registry(root)
    try:
        publisher = reg.publisher_key()
    finally:
        reg.close()
    try:
        load_publisher_private_key(publisher_private_key, publisher)
    except ExportError as exc:
        raise HubError(str(exc)) from None
    key_path = index_key_path(root)
    try:
        if rotate or not key_path.exists():
            index_public = generate_private_key(key_path, replace=rotate)
        else:
            index_public = bytes(load_private_key(key_path).verify_key)
    except ExportError as exc:
        raise HubError(str(exc)) from None
    old = _read_signed(_signed_path(root, "root"))
    version = json.loads(old[0])["version"] + 1 if old else 1
    data = (json.dumps({"format": ROOT_FORMAT, "format_version": 1, "version": version,
                        "created": format_time(datetime.now(timezone.utc)), "index_key": encode_key(index_public)},
                       indent=2) + "\n").encode()
    _write_signed(_signed_path(root, "root"), data, _sign(data, publisher_private_key))
    signed_index(root, force=True)
    return version


def signed_root(root: Path) -> tuple[bytes, bytes] | None:
    """(root.json bytes, root.sig line) or None when the hub has no delegation yet."""
    return _read_signed(_signed_path(root, "root"))


def _wanted(reg: Registry, config: dict) -> dict:
    versions = reg.versions()
    active = [v for v in versions if v["status"] == "active"]
    return {"latest": max((v["version"] for v in active), default=None), "minimum": config["minimum_version"],
            "withdrawn": sorted(v["version"] for v in versions if v["status"] == "withdrawn"),
            "manifests": {str(v["version"]): v["manifest_sha256"] for v in active}}


def signed_index(root: Path, *, force: bool = False, now: datetime | None = None) -> tuple[bytes, bytes] | None:
    """The current signed index, re-signed first when needed. None when the hub has no index key.

    Raises:
        HubError: damaged trust files; ValueError: a bad hub.json.
    """
    root = Path(root)
    if not has_index(root):
        return None
    now = now or datetime.now(timezone.utc)
    config = read_config(root)
    with open(root / "private" / "index.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one signer at a time: serials never collide
        reg = Registry(root, migrate=False)
        try:
            wanted = _wanted(reg, config)
        finally:
            reg.close()
        stored = _read_signed(_signed_path(root, "index"))
        serial = 0
        if stored is not None:
            doc = json.loads(stored[0])
            serial = doc["serial"]
            half_life = (parse_time(doc["expires"], field_name="expires", source="index")
                         - parse_time(doc["issued"], field_name="issued", source="index")) / 2
            same = all(doc.get(k) == v for k, v in wanted.items())
            if same and not force and now < parse_time(doc["issued"], field_name="issued", source="index") + half_life:
                return stored
        doc = {"format": INDEX_FORMAT, "format_version": 1, "serial": max(serial + 1, int(time.time())),
               "issued": format_time(now), "expires": format_time(now + timedelta(seconds=config["index_ttl_seconds"])),
               **wanted}
        data = (json.dumps(doc, indent=1) + "\n").encode()
        sig = _sign(data, index_key_path(root))
        _write_signed(_signed_path(root, "index"), data, sig)
        return data, sig
