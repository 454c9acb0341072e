"""The sync workflow: fetch the manifest, verify, refuse downgrades, download, check, install.

Like python-tuf's updater: the order of checks is the security argument.
  1. manifest + signature -> verified under the pinned key (or the key given on first use,
     pinned only after it verified something); a different key is refused;
  2. its version >= installed (lower: refused; equal and healthy: nothing is downloaded);
  3. the artifact for this device's best runtime, downloaded with a length cap, resumed, retried;
  4. size and sha256 against the signed manifest, then an atomic install; previous version kept.
"""
from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from typing import Callable

from edge_client.errors import (CorruptModelError, DiskFullError, DowngradeError, IntegrityError,
                                NetworkError, TrustError)
from edge_client.fetcher import Cancelled, Fetcher
from edge_client.manifest import (MAX_MANIFEST_BYTES, MAX_SIG_BYTES, ManifestError, encode_key,
                                  manifest_etag, verify_manifest)
from edge_client.runtimes import select_runtime
from edge_client.fileio import sha256_file
from edge_client.store import ModelStore

__all__ = ["SyncResult", "sync"]


@dataclass
class SyncResult:
    """Outcome of a sync that did not fail. ``updated``: a new version was installed."""

    updated: bool
    version: int | None
    message: str
    downloaded_bytes: int = 0
    cancelled: bool = False


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


def sync(store: ModelStore, server_url: str, *, public_key: bytes | None = None,
         progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
         fetcher: Fetcher | None = None) -> SyncResult:
    """Bring the device up to the hub's latest model.

    Args:
        store: the device's model store. server_url: the hub. public_key: raw 32 bytes, needed
        on first use. progress: (done, total) bytes callback. cancel: set to stop (resumable).
        fetcher: a configured Fetcher (default: plain one for server_url).

    Returns:
        SyncResult (updated, version, message, downloaded_bytes, cancelled).

    Raises:
        NetworkError, TrustError, DowngradeError, IntegrityError, DiskFullError,
        NoCompatibleArtifact: nothing was installed and the previous model is still current.
    """
    key, first_use = _resolve_key(store, public_key)
    fetcher = fetcher or Fetcher(server_url)
    current = store.current_version()
    installed = None
    if current is not None:
        try:
            installed = store.load(current)
        except CorruptModelError:
            installed = None  # re-fetch even the same version
    try:
        headers = {"If-None-Match": manifest_etag(installed.manifest_bytes)} if installed else {}
        status, data, hdrs = fetcher.get_small("/v1/manifest", cap=MAX_MANIFEST_BYTES, headers=headers)
        if status == 304:
            return SyncResult(False, current, f"up to date: model version {current}")
        if status == 404:
            raise NetworkError(f"the hub at {server_url} has no model published yet")
        if status != 200:
            raise NetworkError(f"the hub at {server_url} answered HTTP {status} for the manifest")
        offered = hdrs.get("X-Model-Version", "")
        sig_path = f"/v1/versions/{offered}/manifest.sig" if offered.isdigit() else "/v1/manifest.sig"
        status, sig, _ = fetcher.get_small(sig_path, cap=MAX_SIG_BYTES)
        if status != 200:
            raise NetworkError(f"the hub answered HTTP {status} for the manifest signature")
        try:
            manifest = verify_manifest(data, sig, key, source=f"{server_url} manifest")
        except ManifestError as exc:
            raise TrustError(f"{exc}; keeping model version {current}") from None
        if first_use:
            store.pin_key(key)
        version = manifest["model_version"]
        if current is not None and version < current:
            raise DowngradeError(f"the hub offers model version {version}, older than the installed "
                                 f"version {current}: refused (downgrade); keeping {current}")
        if installed is not None and version == current:
            return SyncResult(False, current, f"up to date: model version {current}",
                              downloaded_bytes=fetcher.bytes_received)
        _runtime, artifact = select_runtime(manifest["artifacts"])
        size, digest = artifact["size"], artifact["sha256"]
        partial = store.partial_path(digest)
        store.clear_partials(keep=digest)
        free = shutil.disk_usage(store.home).free
        if free < size:
            raise DiskFullError(f"not enough storage for model version {version}: needs {size} bytes, "
                                f"{free} free; keeping model version {current}")
        try:
            fetcher.download(f"/v1/artifacts/{version}/{artifact['name']}", partial, size=size,
                             etag=f'"{digest}"', progress=progress, cancel=cancel)
        except Cancelled as exc:
            return SyncResult(False, current, f"cancelled at {exc.done} of {exc.total} bytes; "
                              f"sync again to resume", fetcher.bytes_received, cancelled=True)
        if partial.stat().st_size != size or sha256_file(partial) != digest:
            partial.unlink(missing_ok=True)
            raise IntegrityError(f"{artifact['name']} of version {version} does not match its signed "
                                 f"sha256 (tampered or corrupted in transit): refused; keeping model "
                                 f"version {current}")
        store.install(data, sig, manifest, artifact, partial)
        store.set_current(version)
        store.prune()
        before = f"; version {current} kept for rollback" if current and current != version else ""
        return SyncResult(True, version, f"installed model version {version} ({artifact['name']}, "
                          f"{size} bytes){before}", downloaded_bytes=fetcher.bytes_received)
    finally:
        fetcher.close()


