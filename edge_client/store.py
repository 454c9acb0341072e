"""The device's model store: pinned key, installed versions, the ``current`` pointer, partials.

Layout of EDGE_HOME:
    trust/public.key          the pinned publisher key (base64)
    models/<n>/               manifest.json, manifest.sig, installed.json, the artifact
    current                   the active version number (written atomically)
    partial/<sha256>.part     downloads in progress (resumed with Range)

Every write is temp file + os.replace, so a crash or a full disk never leaves a half model.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_client.errors import CorruptModelError, TrustError
from edge_client.fileio import atomic_write, sha256_file
from edge_client.manifest import ManifestError, encode_key, parse_public_key, verify_manifest

__all__ = ["ModelStore", "Installed"]

KEEP_VERSIONS = 2  # current + previous, for rollback


@dataclass
class Installed:
    """One installed, verified version."""

    version: int
    folder: Path
    manifest: dict
    manifest_bytes: bytes
    artifact: dict
    artifact_path: Path


class ModelStore:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.models = self.home / "models"
        self.partial = self.home / "partial"

    # -- trust --------------------------------------------------------------------------------
    def pinned_key(self) -> bytes | None:
        path = self.home / "trust" / "public.key"
        if not path.exists():
            return None
        try:
            return parse_public_key(path.read_text(encoding="ascii", errors="replace"), source=str(path))
        except ManifestError as exc:
            raise TrustError(f"{exc}; the pinned key is damaged: reinstall the app") from None

    def pin_key(self, raw: bytes) -> None:
        atomic_write(self.home / "trust" / "public.key", (encode_key(raw) + "\n").encode())

    # -- versions -----------------------------------------------------------------------------
    def current_version(self) -> int | None:
        try:
            return int((self.home / "current").read_text().strip())
        except (OSError, ValueError):
            return None

    def set_current(self, version: int) -> None:
        atomic_write(self.home / "current", f"{version}\n".encode())

    def installed_versions(self) -> list[int]:
        if not self.models.is_dir():
            return []
        return sorted(int(p.name) for p in self.models.iterdir() if p.name.isdigit() and p.is_dir())

    def load(self, version: int, *, check_hash: bool = True) -> Installed:
        """Read and re-verify an installed version (signature under the pinned key, sha256).

        Raises:
            CorruptModelError: missing files, a bad signature or a changed artifact.
        """
        folder = self.models / str(version)
        try:
            data = (folder / "manifest.json").read_bytes()
            sig = (folder / "manifest.sig").read_bytes()
            chosen = json.loads((folder / "installed.json").read_text())["artifact"]
        except (OSError, ValueError, KeyError) as exc:
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
        if check_hash and (path.stat().st_size != artifact["size"] or sha256_file(path) != artifact["sha256"]):
            raise CorruptModelError(f"{path}: does not match its signed sha256 (corrupted on the device)")
        return Installed(version, folder, manifest, data, artifact, path)

    def install(self, data: bytes, sig: bytes, manifest: dict, artifact: dict, downloaded: Path) -> Path:
        """Move a verified download into models/<n>/ atomically (the folder appears whole).

        Raises:
            DiskFullError: no space for the manifest files.
        """
        version = manifest["model_version"]
        self.models.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.models, prefix=f".{version}."))
        try:
            atomic_write(tmp / "manifest.json", data)
            atomic_write(tmp / "manifest.sig", sig)
            atomic_write(tmp / "installed.json", json.dumps({"artifact": artifact["name"],
                                                              "runtime": artifact["runtime"]}).encode())
            os.replace(downloaded, tmp / artifact["name"])  # same file system: no copy
            final = self.models / str(version)
            if final.exists():  # re-installing a version found corrupt: set the bad one aside
                trash = Path(tempfile.mkdtemp(dir=self.models, prefix=".trash."))
                os.replace(final, trash / "old")
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def prune(self, keep: int = KEEP_VERSIONS) -> None:
        """Delete all but the current version and the ``keep - 1`` newest below it."""
        current = self.current_version()
        lower = [v for v in self.installed_versions() if current is None or v < current]
        keep_set = set(lower[-(keep - 1):] if keep > 1 else []) | {current}
        for v in self.installed_versions():
            if v not in keep_set:
                shutil.rmtree(self.models / str(v), ignore_errors=True)
        for leftover in self.models.glob(".*"):  # interrupted installs
            shutil.rmtree(leftover, ignore_errors=True)

    def partial_path(self, sha256: str) -> Path:
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial / f"{sha256}.part"

    def clear_partials(self, keep: str | None = None) -> None:
        for p in self.partial.glob("*.part") if self.partial.is_dir() else []:
            if p.stem != keep:
                p.unlink(missing_ok=True)
