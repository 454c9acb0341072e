"""The hub's registry: versions, device tokens and received updates in one SQLite file.

Layout of HUBDIR:
    registry.sqlite        versions, tokens (sha256 hashes only), updates
    publisher.key          trusted publisher public key (base64 raw 32 bytes)
    versions/<n>/          manifest.json, manifest.sig and the artifacts, copied atomically
    updates/               device uploads (validated JSON head updates)
    hub.json               aggregation settings (min_updates, export formats and arguments)
    private/               0700: signing.key (0600), checkpoints/<n>/model.pt, aggregate.lock
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sqlite3
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from edge_client.fileio import atomic_write, sha256_file
from edge_client.manifest import ManifestError, encode_key, parse_public_key, verify_manifest

__all__ = ["HubError", "Registry", "init_hub", "verify_bundle"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    published TEXT NOT NULL,
    manifest TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'withdrawn')),
    withdrawn_reason TEXT
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked TEXT
);
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id INTEGER NOT NULL REFERENCES tokens(id),
    received TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL
);
"""
# Columns added by issue 8 (device-update aggregation); added to older hub databases on open.
_UPDATE_COLUMNS = {"base_version": "INTEGER", "epsilon": "REAL", "delta": "REAL",
                   "status": "TEXT NOT NULL DEFAULT 'pending'", "aggregated_into": "INTEGER"}


class HubError(Exception):
    """A refused hub operation; the message is one line for the user."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def init_hub(root: Path, publisher_key: Path | str) -> Path:
    """Create HUBDIR with its registry and the trusted publisher key.

    Raises:
        HubError: unreadable or malformed key.
    """
    try:
        text = Path(publisher_key).read_text(encoding="ascii", errors="replace")
        raw = parse_public_key(text, source=str(publisher_key))
    except OSError as exc:
        raise HubError(f"{publisher_key}: cannot read publisher key ({exc.strerror})") from None
    except ManifestError as exc:
        raise HubError(str(exc)) from None
    root.mkdir(parents=True, exist_ok=True)
    (root / "versions").mkdir(exist_ok=True)
    (root / "updates").mkdir(exist_ok=True)
    atomic_write(root / "publisher.key", (encode_key(raw) + "\n").encode())
    Registry(root).close()
    return root


def verify_bundle(dist: Path, public_key: bytes) -> tuple[dict, bytes, bytes]:
    """Check a bundle's signature and every artifact's size and sha256.

    Returns:
        (manifest dict, manifest bytes, signature bytes).

    Raises:
        HubError: naming the file and the problem.
    """
    try:
        data = (dist / "manifest.json").read_bytes()
        sig = (dist / "manifest.sig").read_bytes()
    except OSError as exc:
        raise HubError(f"{exc.filename}: cannot read ({exc.strerror})") from None
    try:
        manifest = verify_manifest(data, sig, public_key, source=str(dist / "manifest.json"))
    except ManifestError as exc:
        raise HubError(str(exc)) from None
    for art in manifest["artifacts"]:
        path = dist / art["name"]
        if not path.is_file():
            raise HubError(f"{path}: artifact named in the manifest is missing")
        size = path.stat().st_size
        if size != art["size"]:
            raise HubError(f"{path}: size {size} != manifest size {art['size']}")
        if sha256_file(path) != art["sha256"]:
            raise HubError(f"{path}: sha256 does not match the manifest (tampered or corrupt)")
    return manifest, data, sig


class Registry:
    """SQLite registry of one HUBDIR. One instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise HubError(f"{self.root}: hub root does not exist (run `python -m hub init`)")
        self.db = sqlite3.connect(self.root / "registry.sqlite", timeout=10)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(_SCHEMA)
        have = {r[1] for r in self.db.execute("PRAGMA table_info(updates)")}
        for name, kind in _UPDATE_COLUMNS.items():
            if name not in have:
                self.db.execute(f"ALTER TABLE updates ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.db.close()

    def publisher_key(self, override: Path | str | None = None) -> bytes:
        path = Path(override) if override else self.root / "publisher.key"
        try:
            return parse_public_key(path.read_text(encoding="ascii", errors="replace"), source=str(path))
        except OSError:
            raise HubError(f"{path}: no publisher key (run `python -m hub init --publisher-key` "
                           f"or pass --key)") from None
        except ManifestError as exc:
            raise HubError(str(exc)) from None

    # -- versions -----------------------------------------------------------------------------
    def publish(self, dist: Path, *, key: Path | str | None = None) -> int:
        """Verify DIST and add it as a new version (copied atomically under versions/<n>/).

        Raises:
            HubError: bad signature or hashes, or a version not above every published one.
        """
        manifest, data, sig = verify_bundle(Path(dist), self.publisher_key(key))
        version = manifest["model_version"]
        top = self.db.execute("SELECT MAX(version) FROM versions").fetchone()[0]
        if top is not None and version <= top:
            raise HubError(f"{dist}: model_version {version} is not above the latest published "
                           f"version {top} (withdrawn ones included)")
        final = self.root / "versions" / str(version)
        tmp = Path(tempfile.mkdtemp(dir=self.root / "versions", prefix=f".{version}."))
        try:
            (tmp / "manifest.json").write_bytes(data)
            (tmp / "manifest.sig").write_bytes(sig)
            for art in manifest["artifacts"]:
                shutil.copyfile(Path(dist) / art["name"], tmp / art["name"])
                if sha256_file(tmp / art["name"]) != art["sha256"]:  # changed while copying
                    raise HubError(f"{dist / art['name']}: changed while being copied")
            if final.exists():  # leftover of a publish that died before its row was written
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with self.db:
            self.db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, 'active', NULL)",
                (version, str(manifest.get("created", "")), _now(), data.decode("utf-8"),
                 hashlib.sha256(data).hexdigest()))
        return version

    def withdraw(self, version: int, reason: str = "") -> None:
        with self.db:
            cur = self.db.execute("UPDATE versions SET status='withdrawn', withdrawn_reason=? "
                                  "WHERE version=?", (reason, version))
        if cur.rowcount == 0:
            raise HubError(f"version {version} is not in the registry")

    def versions(self) -> list[dict]:
        rows = self.db.execute("SELECT version, created, published, status, withdrawn_reason, "
                               "manifest_sha256 FROM versions ORDER BY version").fetchall()
        return [dict(r) for r in rows]

    def latest_active(self) -> int | None:
        return self.db.execute("SELECT MAX(version) FROM versions WHERE status='active'").fetchone()[0]

    def status(self, version: int) -> str | None:
        row = self.db.execute("SELECT status FROM versions WHERE version=?", (version,)).fetchone()
        return row[0] if row else None

    def version_dir(self, version: int) -> Path:
        return self.root / "versions" / str(int(version))

    # -- tokens -------------------------------------------------------------------------------
    def issue_token(self, name: str) -> str:
        """A new upload token for a device. Only its sha256 is stored: print it once."""
        if not name or len(name) > 100:
            raise HubError("token name must be 1-100 characters")
        token = "dph_" + secrets.token_urlsafe(32)
        with self.db:
            self.db.execute("INSERT INTO tokens (name, token_sha256, created) VALUES (?, ?, ?)",
                            (name, hashlib.sha256(token.encode()).hexdigest(), _now()))
        return token

    def revoke_token(self, name_or_id: str) -> int:
        with self.db:
            cur = self.db.execute("UPDATE tokens SET revoked=? WHERE revoked IS NULL AND "
                                  "(name=? OR CAST(id AS TEXT)=?)", (_now(), name_or_id, name_or_id))
        if cur.rowcount == 0:
            raise HubError(f"no active token named or numbered {name_or_id!r}")
        return cur.rowcount

    def tokens(self) -> list[dict]:
        rows = self.db.execute("SELECT id, name, created, revoked FROM tokens ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    def check_token(self, token: str) -> int | None:
        """The token's id when it is known and not revoked, else None."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        row = self.db.execute("SELECT id FROM tokens WHERE token_sha256=? AND revoked IS NULL",
                              (digest,)).fetchone()
        return row[0] if row else None

    def token_state(self, token: str) -> tuple[str, int | None]:
        """("ok", id), ("revoked", id) or ("unknown", None) for a presented token."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        row = self.db.execute("SELECT id, revoked FROM tokens WHERE token_sha256=?", (digest,)).fetchone()
        if row is None:
            return "unknown", None
        return ("revoked" if row[1] else "ok"), row[0]

    def record_update(self, token_id: int, data_path: Path, size: int, digest: str, *,
                      base_version: int | None = None, epsilon: float | None = None,
                      delta: float | None = None) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO updates (token_id, received, size, sha256, path, base_version, "
                                  "epsilon, delta, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                                  (token_id, _now(), size, digest, str(data_path), base_version, epsilon, delta))
        return cur.lastrowid

    def pending_updates(self, base_version: int) -> list[dict]:
        """Stored, not yet aggregated updates for ``base_version``, oldest first."""
        rows = self.db.execute("SELECT id, token_id, path, epsilon, delta, received FROM updates "
                               "WHERE status='pending' AND base_version=? ORDER BY id", (base_version,)).fetchall()
        return [dict(r) for r in rows]

    def mark_updates(self, ids: list[int], status: str, into: int | None = None) -> None:
        with self.db:
            self.db.executemany("UPDATE updates SET status=?, aggregated_into=? WHERE id=?",
                                [(status, into, i) for i in ids])

    # -- private side (never served) -------------------------------------------------------------
    def private_dir(self) -> Path:
        path = self.root / "private"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def checkpoint_path(self, version: int) -> Path:
        return self.private_dir() / "checkpoints" / str(int(version)) / "model.pt"

    def store_checkpoint(self, version: int, checkpoint: Path) -> Path:
        """Keep a private copy of the checkpoint a version was exported from (atomic).

        Raises:
            HubError: the file cannot be read.
        """
        final = self.checkpoint_path(version)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(final, Path(checkpoint).read_bytes())
        except OSError as exc:
            raise HubError(f"{checkpoint}: cannot read checkpoint ({exc.strerror})") from None
        return final
