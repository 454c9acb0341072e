"""The device's model store: pinned key, trust state, installed versions, ``current``, partials.

Layout of EDGE_HOME:
    .lock                     one lock per state folder, across processes (the app and the CLI)
    trust/public.key          the pinned publisher key (base64)
    trust/state.json          highest version ever trusted, the trusted root and index (see below)
    trust/root.json|.sig      the last verified root, trust/index.json|.sig the last verified index
    models/<n>/               manifest.json, manifest.sig, installed.json, the artifact
                              (a Core ML ``.mlpackage.zip`` is also unpacked here at install)
    current                   the active version number (written atomically)
    partial/<sha256>.part     downloads in progress (resumed with Range)

Every write is temp file + fsync + os.replace + fsync of the folder, so a crash or a full disk
never leaves a half model. Installing, pruning, switching ``current`` and the trust state are
done under the state folder's lock, so a sync in the CLI never deletes the app's install.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge_client.errors import CorruptModelError, IntegrityError, TrustError
from edge_client.fileio import atomic_write, fsync_dir, sha256_file
from edge_client.home_lock import HomeLock
from edge_client.manifest import ManifestError, encode_key, parse_public_key, verify_manifest
from edge_client.trust_index import Root, TrustIndex, format_time, freshness, parse_time, IndexTrustError

__all__ = ["ModelStore", "Installed", "IndexStatus", "extract_zip"]

KEEP_VERSIONS = 2  # current + previous, for rollback
MAX_UNZIPPED_BYTES = 256 * 1024 * 1024
MAX_ZIP_ENTRIES = 2000


@dataclass
class Installed:
    """One installed, verified version."""

    version: int
    folder: Path
    manifest: dict
    manifest_bytes: bytes
    artifact: dict
    artifact_path: Path


@dataclass
class IndexStatus:
    """How current this device's view of the hub's signed model list is (for the app and CLI).

    state: "none" (never synced with an index), "fresh", "stale" (over half its lifetime: sync
    soon) or "expired" (the list may hide a withdrawal: connect and sync). Times are UTC strings.
    """

    state: str
    issued: str | None = None
    expires: str | None = None
    checked: str | None = None
    latest: int | None = None
    minimum: int | None = None
    current_withdrawn: bool = False
    current_below_minimum: bool = False
    message: str = ""


def extract_zip(archive: Path, folder: Path, *, top: str, max_bytes: int = MAX_UNZIPPED_BYTES,
                max_entries: int = MAX_ZIP_ENTRIES) -> dict[str, str]:
    """Unpack a verified zip whose entries all sit under ``top/`` into ``folder/top`` (must be new).

    Refused: an entry outside ``top/``, absolute paths, ``..``, backslashes, symlinks or other
    special entries, more than ``max_entries`` entries or ``max_bytes`` unpacked (a zip bomb).
    Each file is written with ``atomic_write`` (fsync) and hashed.

    Returns:
        {path relative to ``folder``: sha256} of every file written, to re-verify later.

    Raises:
        IntegrityError: naming the archive and the bad entry (nothing is left under ``folder/top``).
    """
    written: dict[str, str] = {}
    dest = folder / top
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > max_entries:
                raise IntegrityError(f"{archive.name}: {len(infos)} entries, over the {max_entries} limit")
            if sum(i.file_size for i in infos) > max_bytes:
                raise IntegrityError(f"{archive.name}: unpacks to over {max_bytes} bytes: refused")
            dest.mkdir()
            for info in infos:
                name = info.filename
                parts = name.rstrip("/").split("/")
                kind = stat.S_IFMT(info.external_attr >> 16)
                if (parts[0] != top or "\\" in name or ".." in parts or "" in parts
                        or (kind and kind not in (stat.S_IFREG, stat.S_IFDIR))):
                    raise IntegrityError(f"{archive.name}: unsafe entry {name!r} (outside {top}/, '..', or a link): "
                                         f"refused")
                target = folder.joinpath(*parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with zf.open(info) as src:
                    data = src.read(info.file_size + 1)
                if len(data) != info.file_size:
                    raise IntegrityError(f"{archive.name}: entry {name!r} is not the size its header says")
                atomic_write(target, data)
                written["/".join(parts)] = sha256_file(target)
    except (zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise IntegrityError(f"{archive.name}: not a readable zip ({exc})") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return written


class ModelStore:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.models = self.home / "models"
        self.partial = self.home / "partial"
        self.trust = self.home / "trust"
        self.lock_timeout = 10.0  # seconds a store write waits for another process's sync or install

    def lock(self, timeout: float | None = None, what: str = "update the model store"):
        """The state folder's cross-process lock (re-entrant): ``with store.lock(): ...``.

        Raises:
            BusyError: another process or thread held it for ``timeout`` (default ``lock_timeout``) seconds.
        """
        return HomeLock.for_home(self.home).hold(self.lock_timeout if timeout is None else timeout, what)

    # -- trust --------------------------------------------------------------------------------
    def pinned_key(self) -> bytes | None:
        path = self.trust / "public.key"
        if not path.exists():
            return None
        try:
            return parse_public_key(path.read_text(encoding="ascii", errors="replace"), source=str(path))
        except ManifestError as exc:
            raise TrustError(f"{exc}; the pinned key is damaged: reinstall the app") from None

    def pin_key(self, raw: bytes) -> None:
        with self.lock():
            atomic_write(self.trust / "public.key", (encode_key(raw) + "\n").encode())

    def trust_state(self) -> dict:
        """trust/state.json: {"highest_version", "root_version", "root_sha256", "index": {...}}.

        Raises:
            TrustError: the file exists but is damaged (fail closed: never forget a downgrade bar).
        """
        path = self.trust / "state.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError) as exc:
            raise TrustError(f"{path}: the device's trust record is damaged ({type(exc).__name__}): "
                             f"reinstall the app") from None
        if not isinstance(state, dict):
            raise TrustError(f"{path}: the device's trust record is damaged: reinstall the app")
        return state

    def highest_trusted(self) -> int | None:
        """The highest model version this device ever trusted (survives rollback and a lost ``current``).

        A device from before the record existed counts its installed versions.
        """
        recorded = self.trust_state().get("highest_version")
        seen = [v for v in [recorded, self.current_version(), *self.installed_versions()] if isinstance(v, int)]
        return max(seen) if seen else None

    def _write_state(self, state: dict) -> None:
        atomic_write(self.trust / "state.json", (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())

    def record_root(self, root: Root, data: bytes, sig: bytes) -> None:
        """Keep a verified root (never a lower version than the one kept)."""
        with self.lock():
            state = self.trust_state()
            if root.version < int(state.get("root_version") or 0):
                raise TrustError(f"root version {root.version} is below the trusted {state['root_version']}")
            atomic_write(self.trust / "root.json", data)
            atomic_write(self.trust / "root.sig", sig)
            state.update(root_version=root.version, root_sha256=root.sha256)
            self._write_state(state)

    def record_index(self, index: TrustIndex, data: bytes, sig: bytes, *, now: datetime) -> None:
        """Keep a verified index and when it was checked."""
        with self.lock():
            state = self.trust_state()
            atomic_write(self.trust / "index.json", data)
            atomic_write(self.trust / "index.sig", sig)
            state["index"] = {"serial": index.serial, "sha256": index.sha256, "issued": format_time(index.issued),
                              "expires": format_time(index.expires), "latest": index.latest,
                              "minimum": index.minimum, "withdrawn": sorted(index.withdrawn),
                              "checked": format_time(now)}
            self._write_state(state)

    def record_trusted_version(self, version: int) -> None:
        """Raise the highest-ever-trusted version (never lowers it)."""
        with self.lock():
            state = self.trust_state()
            state["highest_version"] = max(version, int(state.get("highest_version") or 0))
            self._write_state(state)

    def index_status(self, now: datetime | None = None) -> IndexStatus:
        """The device's view of the signed model list, for the app ("model list is stale")."""
        now = now or datetime.now(timezone.utc)
        try:
            saved = self.trust_state().get("index")
        except TrustError as exc:
            return IndexStatus("expired", message=str(exc))
        if not saved:
            return IndexStatus("none", message="the model list was never checked: connect and sync")
        try:
            issued = parse_time(saved["issued"], field_name="issued", source="trust/state.json")
            expires = parse_time(saved["expires"], field_name="expires", source="trust/state.json")
        except (KeyError, IndexTrustError) as exc:
            return IndexStatus("expired", message=str(exc))
        state = freshness(issued, expires, now)
        current = self.current_version()
        withdrawn = current is not None and current in (saved.get("withdrawn") or [])
        below = current is not None and current < int(saved.get("minimum") or 0)
        if state == "expired":
            message = f"model list expired on {saved['expires']}: connect and sync to check for withdrawn models"
        elif state == "stale":
            message = f"model list is stale (valid until {saved['expires']}): sync soon"
        else:
            message = f"model list checked {saved.get('checked')}, valid until {saved['expires']}"
        if withdrawn:
            message = f"model version {current} was withdrawn by the publisher; " + message
        elif below:
            message = f"model version {current} is below the minimum allowed version {saved['minimum']}; " + message
        return IndexStatus(state, saved["issued"], saved["expires"], saved.get("checked"), saved.get("latest"),
                           saved.get("minimum"), withdrawn, below, message)

    # -- versions -----------------------------------------------------------------------------
    def current_version(self) -> int | None:
        try:
            return int((self.home / "current").read_text().strip())
        except (OSError, ValueError):
            return None

    def set_current(self, version: int) -> None:
        with self.lock(what=f"switch to model version {version}"):
            atomic_write(self.home / "current", f"{version}\n".encode())

    def installed_versions(self) -> list[int]:
        if not self.models.is_dir():
            return []
        return sorted(int(p.name) for p in self.models.iterdir() if p.name.isdigit() and p.is_dir())

    def load(self, version: int, *, check_hash: bool = True) -> Installed:
        """Read and re-verify an installed version (signature under the pinned key, sha256s).

        Raises:
            CorruptModelError: missing files, a bad signature or a changed artifact.
        """
        folder = self.models / str(version)
        try:
            data = (folder / "manifest.json").read_bytes()
            sig = (folder / "manifest.sig").read_bytes()
            installed = json.loads((folder / "installed.json").read_text())
            chosen = installed["artifact"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptModelError(f"model version {version}: files missing or unreadable ({exc})") from None
        key = self.pinned_key()
        if key is None:
            raise CorruptModelError(f"model version {version}: no pinned key to verify it")
        try:
            manifest = verify_manifest(data, sig, key, source=f"{folder / 'manifest.json'}")
        except ManifestError as exc:
            raise CorruptModelError(str(exc)) from None
        artifact = next((a for a in manifest["artifacts"] if a["name"] == chosen), None)
        path = folder / chosen
        if artifact is None or not path.is_file():
            raise CorruptModelError(f"model version {version}: artifact {chosen} is missing")
        if check_hash:
            if path.stat().st_size != artifact["size"] or sha256_file(path) != artifact["sha256"]:
                raise CorruptModelError(f"{path}: does not match its signed sha256 (corrupted on the device)")
            for rel, digest in (installed.get("unpacked") or {}).items():
                item = folder.joinpath(*rel.split("/"))
                if not item.is_file() or sha256_file(item) != digest:
                    raise CorruptModelError(f"{item}: unpacked model file changed or missing (corrupted on the device)")
        return Installed(version, folder, manifest, data, artifact, path)

    def install(self, data: bytes, sig: bytes, manifest: dict, artifact: dict, downloaded: Path) -> Path:
        """Move a verified download into models/<n>/ atomically (the folder appears whole).

        A ``.mlpackage.zip`` is re-verified and unpacked into the new folder before it appears,
        so the iOS runtime never unpacks in place.

        Raises:
            DiskFullError: no space. IntegrityError: the download changed, or an unsafe zip.
        """
        version = manifest["model_version"]
        with self.lock(what=f"install model version {version}"):
            self.models.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.models, prefix=f".{version}."))
            try:
                _fsync_file(downloaded)
                os.replace(downloaded, tmp / artifact["name"])  # same file system: no copy
                record = {"artifact": artifact["name"], "runtime": artifact["runtime"]}
                if artifact["name"].endswith(".mlpackage.zip"):
                    packed = tmp / artifact["name"]
                    if sha256_file(packed) != artifact["sha256"]:  # re-verify right before unpacking
                        raise IntegrityError(f"{artifact['name']}: changed since it was verified: refused")
                    record["unpacked"] = extract_zip(packed, tmp, top=_unpacked_name(artifact["name"]))
                atomic_write(tmp / "manifest.json", data)
                atomic_write(tmp / "manifest.sig", sig)
                atomic_write(tmp / "installed.json", json.dumps(record).encode())
                fsync_dir(tmp)
                final = self.models / str(version)
                if final.exists():  # re-installing a version found corrupt: set the bad one aside
                    trash = Path(tempfile.mkdtemp(dir=self.models, prefix=".trash."))
                    os.replace(final, trash / "old")
                    shutil.rmtree(trash, ignore_errors=True)
                os.replace(tmp, final)
                fsync_dir(self.models)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return final

    def prune(self, keep: int = KEEP_VERSIONS) -> None:
        """Delete all but the current version and the ``keep - 1`` newest below it, and the
        leftovers of installs that died (safe: no install runs while the lock is held)."""
        with self.lock(what="remove old model versions"):
            current = self.current_version()
            lower = [v for v in self.installed_versions() if current is None or v < current]
            keep_set = set(lower[-(keep - 1):] if keep > 1 else []) | {current}
            for v in self.installed_versions():
                if v not in keep_set:
                    shutil.rmtree(self.models / str(v), ignore_errors=True)
            for leftover in self.models.glob(".*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def partial_path(self, sha256: str) -> Path:
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial / f"{sha256}.part"

    def clear_partials(self, keep: str | None = None) -> None:
        for p in self.partial.glob("*.part") if self.partial.is_dir() else []:
            if p.stem != keep:
                p.unlink(missing_ok=True)


def _unpacked_name(artifact_name: str) -> str:
    """model_int8.mlpackage.zip -> model_int8.mlpackage (the folder Core ML loads)."""
    return artifact_name[:-len(".zip")] if artifact_name.endswith(".zip") else artifact_name + ".d"


def _fsync_file(path: Path) -> None:
    """Flush a downloaded file's data before it is renamed into an installed folder."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
