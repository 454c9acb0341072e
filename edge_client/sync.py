"""The sync workflow: signed model list, then manifest, then artifact; verify each before the next.

Like python-tuf's updater: the order of checks is the security argument.
  1. root.json under the pinned publisher key (or the key given on first use, pinned only once it
     verified something); never a root version below the one this device trusts;
  2. index.json under the root's index key: not expired, serial not below the trusted one;
  3. the index's latest version, unless it is below the highest version this device ever trusted
     (kept in trust/state.json: a rollback or a lost ``current`` does not lower it);
  4. that version's manifest: exactly the bytes the index names (so never a withdrawn or
     unlisted one), signed by the publisher key;
  5. the artifact for this device's best runtime, downloaded with a length cap, resumed,
     retried; size and sha256 against the manifest; an atomic install; the previous kept.
All of it runs under the state folder's lock (one sync or install at a time, across processes).
"""
from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from edge_client.errors import (CorruptModelError, DiskFullError, DowngradeError, ExpiredIndexError,
                                IntegrityError, NetworkError, TrustError, WithdrawnError)
from edge_client.fetcher import Cancelled, Fetcher
from edge_client.fileio import sha256_file
from edge_client.manifest import MAX_MANIFEST_BYTES, MAX_SIG_BYTES, ManifestError, encode_key, verify_manifest
from edge_client.runtimes import select_runtime
from edge_client.store import ModelStore
from edge_client.trust_index import (MAX_INDEX_BYTES, MAX_ROOT_BYTES, IndexExpired, IndexTrustError, Root,
                                     TrustIndex, VersionRefused, check_manifest, choose_target, format_time,
                                     verify_index, verify_root)

__all__ = ["SyncResult", "sync", "SYNC_LOCK_WAIT_S"]

SYNC_LOCK_WAIT_S = 5.0


@dataclass
class SyncResult:
    """Outcome of a sync that did not fail. ``updated``: a new version was installed.

    ``index_expires``: until when the signed model list just checked holds (UTC, for the app's
    "model list is stale" line); ``notice``: a warning for the user (e.g. the active version
    was withdrawn and no newer one exists yet), else None.
    """

    updated: bool
    version: int | None
    message: str
    downloaded_bytes: int = 0
    cancelled: bool = False
    index_expires: str | None = None
    notice: str | None = None


def _keeping(current: int | None) -> str:
    return f"; keeping model version {current}" if current is not None else ""


def _resolve_key(store: ModelStore, public_key: bytes | None) -> tuple[bytes, bool]:
    pinned = store.pinned_key()
    if pinned is not None:
        if public_key is not None and public_key != pinned:
            raise TrustError(f"the key given ({encode_key(public_key)[:12]}...) differs from the key pinned "
                             f"on this device ({encode_key(pinned)[:12]}...): refused")
        return pinned, False
    if public_key is None:
        raise TrustError("no publisher key pinned on this device: pass the public key on first sync (--key PUB)")
    return public_key, True


def _get_signed(fetcher: Fetcher, path: str, sig_path: str, *, cap: int, what: str) -> tuple[bytes, bytes]:
    """A signed document and its signature: from the ``X-Signature`` header of the same response
    (the hub's; no race with a re-signing), else from ``sig_path`` (a static mirror)."""
    status, data, headers = fetcher.get_small(path, cap=cap)
    if status == 404:
        raise TrustError(f"the hub at {fetcher.base} serves no signed {what} ({path}): refusing to install "
                         f"without one (the hub operator runs `python -m hub delegate`)")
    if status != 200:
        raise NetworkError(f"the hub at {fetcher.base} answered HTTP {status} for {path}")
    header = headers.get("X-Signature")
    if header and len(header) <= MAX_SIG_BYTES:
        return data, header.encode("ascii", "replace")
    status, sig, _ = fetcher.get_small(sig_path, cap=MAX_SIG_BYTES)
    if status != 200:
        raise NetworkError(f"the hub at {fetcher.base} answered HTTP {status} for {sig_path}")
    return data, sig


def _trusted_list(store: ModelStore, fetcher: Fetcher, key: bytes, now: datetime) -> tuple[Root, TrustIndex]:
    """Steps 1-2: fetch, verify and record the root and the index."""
    state = store.trust_state()
    data, sig = _get_signed(fetcher, "/v1/root.json", "/v1/root.sig", cap=MAX_ROOT_BYTES, what="root")
    try:
        root = verify_root(data, sig, key, trusted_version=state.get("root_version"),
                           source=f"{fetcher.base} root.json")
    except IndexTrustError as exc:
        raise TrustError(str(exc)) from None
    saved = state.get("index") or {}
    if root.version != state.get("root_version") or root.sha256 != state.get("root_sha256"):
        if root.version == state.get("root_version"):
            raise TrustError(f"{fetcher.base} root.json: a different root with the same version {root.version}: "
                             f"refused")
        store.record_root(root, data, sig)
        saved = {}  # a new index key (e.g. rotated after a theft): the old key's serials no longer bind
    data, sig = _get_signed(fetcher, "/v1/index.json", "/v1/index.sig", cap=MAX_INDEX_BYTES, what="model list")
    try:
        index = verify_index(data, sig, root, now=now, trusted_serial=saved.get("serial"),
                             trusted_sha256=saved.get("sha256"), source=f"{fetcher.base} index.json")
    except IndexExpired as exc:
        raise ExpiredIndexError(str(exc)) from None
    except IndexTrustError as exc:
        raise TrustError(str(exc)) from None
    store.record_index(index, data, sig, now=now)
    return root, index


def sync(store: ModelStore, server_url: str, *, public_key: bytes | None = None,
         progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
         fetcher: Fetcher | None = None, now: datetime | None = None) -> SyncResult:
    """Bring the device up to the latest model the hub's signed model list names.

    Args:
        store: the device's model store. server_url: the hub. public_key: raw 32 bytes, needed
        on first use. progress: (done, total) bytes callback. cancel: set to stop (resumable).
        fetcher: a configured Fetcher (default: one for server_url, which refuses plain http to
        another host). now: the time to check expiry against (default: the clock).

    Returns:
        SyncResult (updated, version, message, downloaded_bytes, cancelled, index_expires, notice).

    Raises:
        NetworkError, TrustError, ExpiredIndexError, DowngradeError, WithdrawnError,
        IntegrityError, DiskFullError, NoCompatibleArtifact, InsecureTransportError, BusyError:
        nothing was installed and the previous model is still current.
    """
    key, first_use = _resolve_key(store, public_key)
    fetcher = fetcher or Fetcher(server_url)
    now = now or datetime.now(timezone.utc)
    try:
        with store.lock(SYNC_LOCK_WAIT_S, what="sync"):
            _root, index = _trusted_list(store, fetcher, key, now)
            if first_use:
                store.pin_key(key)  # it verified the root
            return _install_latest(store, fetcher, key, index, progress, cancel)
    finally:
        fetcher.close()


def _install_latest(store: ModelStore, fetcher: Fetcher, key: bytes, index: TrustIndex, progress, cancel) -> SyncResult:
    """Steps 3-5."""
    expires = format_time(index.expires)
    current = store.current_version()
    notice = None
    if current is not None and current in index.withdrawn:
        notice = f"model version {current} was withdrawn by the publisher"
    if index.latest is None:
        if current is None:
            raise NetworkError(f"the hub at {fetcher.base} has no model published yet")
        return SyncResult(False, current, f"the hub offers no model version now; keeping model version {current}",
                          downloaded_bytes=fetcher.bytes_received, index_expires=expires, notice=notice)
    installed = None
    if current == index.latest:
        try:
            installed = store.load(current)
        except CorruptModelError:
            installed = None  # re-fetch the same version
    if installed is not None:  # up to date, even if a higher version was trusted once and withdrawn
        store.record_trusted_version(current)
        return SyncResult(False, current, f"up to date: model version {current}",
                          downloaded_bytes=fetcher.bytes_received, index_expires=expires, notice=notice)
    try:
        version = choose_target(index, highest_trusted=store.highest_trusted())
    except VersionRefused as exc:
        raise DowngradeError(f"{exc}{_keeping(current)}") from None
    if current != version and version in store.installed_versions():  # e.g. after a rollback
        try:
            kept = store.load(version)
            check_manifest(index, version, kept.manifest_bytes)
        except (CorruptModelError, IndexTrustError):
            pass  # download it again
        else:
            store.set_current(version)
            store.record_trusted_version(version)
            return SyncResult(True, version, f"switched to the installed model version {version}",
                              downloaded_bytes=fetcher.bytes_received, index_expires=expires)

    status, data, _ = fetcher.get_small(f"/v1/versions/{version}/manifest", cap=MAX_MANIFEST_BYTES)
    if status != 200:
        raise NetworkError(f"the hub answered HTTP {status} for the manifest of version {version}")
    status, sig, _ = fetcher.get_small(f"/v1/versions/{version}/manifest.sig", cap=MAX_SIG_BYTES)
    if status != 200:
        raise NetworkError(f"the hub answered HTTP {status} for the manifest signature of version {version}")
    try:
        check_manifest(index, version, data)
    except VersionRefused as exc:
        raise WithdrawnError(f"{exc}{_keeping(current)}") from None
    except IndexTrustError as exc:
        raise TrustError(f"{exc}{_keeping(current)}") from None
    try:
        manifest = verify_manifest(data, sig, key, source=f"{fetcher.base} manifest")
    except ManifestError as exc:
        raise TrustError(f"{exc}{_keeping(current)}") from None
    if manifest["model_version"] != version:
        raise TrustError(f"the manifest for version {version} says model_version {manifest['model_version']}: refused")

    _runtime, artifact = select_runtime(manifest["artifacts"])
    size, digest = artifact["size"], artifact["sha256"]
    partial = store.partial_path(digest)
    store.clear_partials(keep=digest)
    free = shutil.disk_usage(store.home).free
    if free < size:
        raise DiskFullError(f"not enough storage for model version {version}: needs {size} bytes, "
                            f"{free} free{_keeping(current)}")
    try:
        fetcher.download(f"/v1/artifacts/{version}/{artifact['name']}", partial, size=size,
                         etag=f'"{digest}"', progress=progress, cancel=cancel)
    except Cancelled as exc:
        return SyncResult(False, current, f"cancelled at {exc.done} of {exc.total} bytes; sync again to resume",
                          fetcher.bytes_received, cancelled=True, index_expires=expires, notice=notice)
    if partial.stat().st_size != size or sha256_file(partial) != digest:
        partial.unlink(missing_ok=True)
        raise IntegrityError(f"{artifact['name']} of version {version} does not match its signed sha256 "
                             f"(tampered or corrupted in transit): refused{_keeping(current)}")
    store.install(data, sig, manifest, artifact, partial)
    store.set_current(version)
    store.record_trusted_version(version)
    store.prune()
    before = f"; version {current} kept for rollback" if current and current != version else ""
    return SyncResult(True, version, f"installed model version {version} ({artifact['name']}, {size} bytes){before}",
                      downloaded_bytes=fetcher.bytes_received, index_expires=expires)
