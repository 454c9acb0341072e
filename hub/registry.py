"""The hub's registry: versions, device tokens, received updates and candidates in one SQLite file.

Layout of HUBDIR:
    registry.sqlite        versions, tokens (sha256 hashes only), updates (their bodies too), candidates
    publisher.key          trusted publisher public key (base64 raw 32 bytes)
    versions/<n>/          manifest.json, manifest.sig, the artifacts (and MODEL_CARD.md), copied atomically
    trust/                 root.signed.json and index.signed.json, the signed model list (hub/index.py)
    hub.json               settings (hub/device_updates.py DEFAULT_CONFIG)
    private/               0700: signing.key and index.key (0600), checkpoints/<n>/model.pt,
                           candidates/<n>/ (versions built from device updates, awaiting approval),
                           aggregate.lock, aggregate.log

SQLite runs in WAL mode (readers never wait for a writer) with synchronous=FULL (a commit is on
disk before the hub answers) and a busy timeout; a writer that still finds the database locked
gets ``sqlite3.OperationalError``, which the server answers with 503 and Retry-After.
A version's files are written and renamed into place inside the same write transaction that
checks its number and inserts its row: a crash leaves either both or a folder without a row,
which the next publish or ``hub serve`` start removes.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import sqlite3
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edge_client.fileio import atomic_write, fsync_dir, sha256_file
from edge_client.manifest import ManifestError, encode_key, parse_public_key, verify_manifest

__all__ = ["HubError", "Registry", "init_hub", "verify_bundle", "now_utc", "is_seeded"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY, created TEXT NOT NULL, published TEXT NOT NULL, manifest TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('active', 'withdrawn')),
    withdrawn_reason TEXT);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL, revoked TEXT);
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, token_id INTEGER NOT NULL REFERENCES tokens(id),
    received TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, path TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    version INTEGER PRIMARY KEY, base_version INTEGER NOT NULL, created TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    folder TEXT NOT NULL, devices INTEGER NOT NULL, summary TEXT NOT NULL, decided TEXT, reason TEXT);
"""
# Columns added after the first release; added to older hub databases on open.
_COLUMNS = {"updates": {"base_version": "INTEGER", "epsilon": "REAL", "delta": "REAL",
                        "status": "TEXT NOT NULL DEFAULT 'pending'", "aggregated_into": "INTEGER",
                        "body": "BLOB", "content_sha256": "TEXT", "candidate": "INTEGER", "norm": "REAL"},
            "versions": {"test_build": "INTEGER NOT NULL DEFAULT 0"}}
_INDEXES = """
CREATE INDEX IF NOT EXISTS updates_content ON updates(content_sha256);
CREATE INDEX IF NOT EXISTS updates_token_body ON updates(token_id, sha256);
CREATE INDEX IF NOT EXISTS updates_status ON updates(status, base_version);
"""
BUSY_TIMEOUT_S = 5.0


class HubError(Exception):
    """A refused hub operation; the message is one line for the user."""


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_seeded(privacy: dict | None) -> bool:
    """True when a privacy block says its noise was seeded or it is a test build (read with .get)."""
    privacy = privacy or {}
    return bool(privacy.get("seeded") or privacy.get("test_build"))


def init_hub(root: Path, publisher_key: Path | str) -> Path:
    """Create HUBDIR with its registry, the trusted publisher key and ``private/`` (0700).

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
    (root / "private").mkdir(mode=0o700, exist_ok=True)
    os.chmod(root / "private", 0o700)
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
    """SQLite registry of one HUBDIR. One instance per thread (sqlite3 connections are not shared).

    Args:
        root: HUBDIR. migrate: create missing tables and columns (CLI commands and server start;
        request handlers skip it). busy_timeout: seconds a writer waits for the lock.
    """

    def __init__(self, root: Path, *, migrate: bool = True, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.root = Path(root)
        if not (self.root / "registry.sqlite").is_file() and not migrate or not self.root.is_dir():
            raise HubError(f"{self.root}: hub root does not exist (run `python -m hub init`)")
        self.db = sqlite3.connect(self.root / "registry.sqlite", timeout=busy_timeout, isolation_level=None,
                                  check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA synchronous=FULL")
        if migrate:
            self.db.execute("PRAGMA journal_mode=WAL")
            with self.transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self.db.execute(statement)
                for table, columns in _COLUMNS.items():
                    have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
                    for name, kind in columns.items():
                        if name not in have:
                            self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                for statement in filter(str.strip, _INDEXES.split(";")):
                    self.db.execute(statement)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); nested calls join the outer one."""
        if self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

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
    def publish(self, dist: Path, *, key: Path | str | None = None, allow_seeded: bool = False,
                extra_files: dict[str, bytes] | None = None,
                on_commit: Callable[[sqlite3.Connection, int], None] | None = None) -> int:
        """Verify DIST and add it as a new version, files and row as one unit.

        Args:
            dist: the signed bundle. key: publisher key override. allow_seeded: accept a manifest
            whose privacy block says ``seeded`` or ``test_build`` (published as a test build).
            extra_files: more files for the version folder (e.g. MODEL_CARD.md). on_commit: more
            SQL to run in the same transaction (e.g. mark the updates a candidate used).

        Raises:
            HubError: bad signature or hashes, a seeded bundle without ``allow_seeded``, or a
            version not above every published one.
        """
        dist = Path(dist)
        manifest, data, sig = verify_bundle(dist, self.publisher_key(key))
        test_build = is_seeded(manifest.get("privacy"))
        if test_build and not allow_seeded:
            raise HubError(f"{dist / 'manifest.json'}: privacy block has \"seeded\": true (or test_build): its noise is "
                           f"reproducible, so its epsilon is no guarantee; pass --allow-seeded to publish it as a "
                           f"test build (no DP guarantee)")
        version = manifest["model_version"]
        versions_dir = self.root / "versions"
        versions_dir.mkdir(exist_ok=True)
        with self.transaction() as db:
            self._sweep_versions(db)
            top = db.execute("SELECT MAX(version) FROM versions").fetchone()[0]
            if top is not None and version <= top:
                raise HubError(f"{dist}: model_version {version} is not above the latest published "
                               f"version {top} (withdrawn ones included)")
            final = versions_dir / str(version)
            tmp = Path(tempfile.mkdtemp(dir=versions_dir, prefix=f".{version}."))
            try:
                atomic_write(tmp / "manifest.json", data)
                atomic_write(tmp / "manifest.sig", sig)
                for art in manifest["artifacts"]:
                    with open(dist / art["name"], "rb") as src:
                        atomic_write(tmp / art["name"], lambda out: shutil.copyfileobj(src, out, 1 << 20))
                    if sha256_file(tmp / art["name"]) != art["sha256"]:  # changed while copying
                        raise HubError(f"{dist / art['name']}: changed while being copied")
                for name, content in (extra_files or {}).items():
                    atomic_write(tmp / name, content)
                os.replace(tmp, final)
                fsync_dir(versions_dir)
                db.execute("INSERT INTO versions (version, created, published, manifest, manifest_sha256, status, "
                           "withdrawn_reason, test_build) VALUES (?, ?, ?, ?, ?, 'active', NULL, ?)",
                           (version, str(manifest.get("created", "")), now_utc(), data.decode("utf-8"),
                            hashlib.sha256(data).hexdigest(), int(test_build)))
                if on_commit:
                    on_commit(db, version)
                self._supersede(db, version)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(final, ignore_errors=True)  # the row is rolled back with it
                raise
        return version

    def _supersede(self, db: sqlite3.Connection, version: int) -> None:
        """A new version makes older pending work stale: candidates on older bases are rejected,
        updates for older bases will never be aggregated."""
        for row in db.execute("SELECT version FROM candidates WHERE status='pending' AND base_version < ?",
                              (version,)).fetchall():
            self.decide_candidate(row[0], "rejected", f"superseded by version {version}", updates_to="stale")
        db.execute("UPDATE updates SET status='stale' WHERE status='pending' AND base_version < ?", (version,))

    def _sweep_versions(self, db: sqlite3.Connection) -> list[str]:
        """Remove version folders without a row and temporary folders (inside a write transaction,
        so no publish is running). Returns the names removed."""
        known = {str(r[0]) for r in db.execute("SELECT version FROM versions")}
        removed = []
        for child in (self.root / "versions").iterdir() if (self.root / "versions").is_dir() else []:
            if child.name.startswith(".") or (child.name.isdigit() and child.name not in known):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child.name)
        return removed

    def sweep(self) -> list[str]:
        """Remove what a killed publish left behind (see ``_sweep_versions``)."""
        with self.transaction() as db:
            return self._sweep_versions(db)

    def withdraw(self, version: int, reason: str = "") -> None:
        """Stop offering a version; a pending candidate built on it is rejected (its updates go stale)."""
        with self.transaction() as db:
            cur = db.execute("UPDATE versions SET status='withdrawn', withdrawn_reason=? WHERE version=?",
                             (reason, version))
            if cur.rowcount == 0:
                raise HubError(f"version {version} is not in the registry")
            for row in db.execute("SELECT version FROM candidates WHERE status='pending' AND base_version=?",
                                  (version,)).fetchall():
                self.decide_candidate(row[0], "rejected", f"base version {version} withdrawn", updates_to="stale")

    def versions(self) -> list[dict]:
        rows = self.db.execute("SELECT version, created, published, status, withdrawn_reason, manifest_sha256, "
                               "test_build FROM versions ORDER BY version").fetchall()
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
        if not name or len(name) > 100 or not name.isprintable():
            raise HubError("token name must be 1-100 printable characters")
        token = "dph_" + secrets.token_urlsafe(32)
        with self.transaction() as db:
            db.execute("INSERT INTO tokens (name, token_sha256, created) VALUES (?, ?, ?)",
                       (name, hashlib.sha256(token.encode()).hexdigest(), now_utc()))
        return token

    def revoke_token(self, name_or_id: str) -> tuple[int, int]:
        """Revoke a token, drop its pending updates and reject a pending candidate that used one.

        Returns:
            (tokens revoked, updates dropped).
        """
        with self.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM tokens WHERE revoked IS NULL AND (name=? OR "
                                            "CAST(id AS TEXT)=?)", (name_or_id, name_or_id))]
            if not ids:
                raise HubError(f"no active token named or numbered {name_or_id!r}")
            marks = ",".join("?" * len(ids))
            db.execute(f"UPDATE tokens SET revoked=? WHERE id IN ({marks})", (now_utc(), *ids))
            hit = {r[0] for r in db.execute(f"SELECT candidate FROM updates WHERE status='candidate' AND token_id IN "
                                            f"({marks})", ids)}
            for version in hit:
                self.decide_candidate(version, "rejected", "a contributing device token was revoked",
                                      updates_to="pending")
            dropped = db.execute(f"UPDATE updates SET status='revoked' WHERE status='pending' AND token_id IN "
                                 f"({marks})", ids).rowcount
        return len(ids), dropped

    def tokens(self) -> list[dict]:
        rows = self.db.execute("SELECT id, name, created, revoked FROM tokens ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    def token_state(self, token: str) -> tuple[str, int | None]:
        """("ok", id), ("revoked", id) or ("unknown", None) for a presented token."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        row = self.db.execute("SELECT id, revoked FROM tokens WHERE token_sha256=?", (digest,)).fetchone()
        if row is None:
            return "unknown", None
        return ("revoked" if row[1] else "ok"), row[0]

    # -- candidates (versions built from device updates, awaiting an operator) -----------------
    def decide_candidate(self, version: int, status: str, reason: str, *, updates_to: str) -> None:
        """Close a pending candidate: ``status`` approved/rejected; its updates move to ``updates_to``."""
        with self.transaction() as db:
            cur = db.execute("UPDATE candidates SET status=?, decided=?, reason=? WHERE version=? AND status='pending'",
                             (status, now_utc(), reason, version))
            if cur.rowcount == 0:
                raise HubError(f"no pending candidate version {version} (see `python -m hub pending`)")
            into = version if updates_to == "aggregated" else None
            db.execute("UPDATE updates SET status=?, aggregated_into=?, candidate=CASE WHEN ?='pending' THEN NULL "
                       "ELSE candidate END WHERE candidate=? AND status='candidate'",
                       (updates_to, into, updates_to, version))

    def candidates(self, status: str | None = None) -> list[dict]:
        sql = "SELECT * FROM candidates" + (" WHERE status=?" if status else "") + " ORDER BY version"
        return [dict(r) for r in self.db.execute(sql, (status,) if status else ()).fetchall()]

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
        try:
            with open(checkpoint, "rb") as src:
                atomic_write(final, lambda out: shutil.copyfileobj(src, out, 1 << 20))
        except OSError as exc:
            raise HubError(f"{checkpoint}: cannot read checkpoint ({exc.strerror})") from None
        return final
