"""Device updates in the registry: store one (idempotent, replay-proof), pick the ones a candidate uses.

An update row holds its exact body (a BLOB), so the row and the data are one unit: a commit is
the whole upload, a crash before it is no upload at all, and the hub answers 202 only after it.

Rules, all inside one write transaction:
- the same token sending the same bytes again (its answer was lost) gets the stored record (200);
- the same head change (same numbers, whatever the metadata or token) seen before: 409, replay;
- a token's new update for a base version replaces its pending one (one pending per token);
- statuses: pending -> candidate (in a version awaiting approval) -> aggregated, or replaced,
  rejected (candidate rejected), revoked (token revoked), stale (a newer version was published).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hub.device_updates import UpdateRejected, content_digest
from hub.registry import HubError, Registry, now_utc

__all__ = ["store_update", "pending_updates", "load_payload", "claim_for_candidate", "pending_devices"]


def store_update(reg: Registry, token_id: int, body: bytes, payload: dict) -> tuple[int, dict]:
    """Store one checked upload.

    Returns:
        (HTTP status 200 or 202, the JSON answer: id, sha256, base_version, status text).

    Raises:
        UpdateRejected: 409 for a replayed head change or a base version that is no longer current.
    """
    body_sha = hashlib.sha256(body).hexdigest()
    content = content_digest(payload)
    with reg.transaction() as db:
        same = db.execute("SELECT id, status, base_version, aggregated_into FROM updates WHERE token_id=? AND "
                          "sha256=?", (token_id, body_sha)).fetchone()
        if same is not None:
            return 200, {"id": same["id"], "sha256": body_sha, "base_version": same["base_version"],
                         "status": f"already received ({same['status']})"}
        if db.execute("SELECT 1 FROM updates WHERE content_sha256=?", (content,)).fetchone():
            raise UpdateRejected(409, "this head change was already received (a replayed update): refused")
        current = db.execute("SELECT MAX(version) FROM versions WHERE status='active'").fetchone()[0]
        if payload["base_version"] != current:
            raise UpdateRejected(409, f"update is for version {payload['base_version']}, the current version is "
                                      f"{current}: sync, then train again")
        replaced = db.execute("UPDATE updates SET status='replaced' WHERE token_id=? AND base_version=? AND "
                              "status='pending'", (token_id, current)).rowcount
        cur = db.execute("INSERT INTO updates (token_id, received, size, sha256, path, base_version, epsilon, delta, "
                         "status, body, content_sha256, norm) VALUES (?, ?, ?, ?, 'db', ?, ?, ?, 'pending', ?, ?, ?)",
                         (token_id, now_utc(), len(body), body_sha, current, payload["epsilon"], payload["delta"],
                          body, content, payload.get("_norm")))
        devices = pending_devices(reg, current)
    note = "; it replaces this device's earlier pending update" if replaced else ""
    return 202, {"id": cur.lastrowid, "sha256": body_sha, "base_version": current,
                 "status": f"stored: updates from {devices} devices wait for version {current}{note}"}


def pending_devices(reg: Registry, base_version: int | None) -> int:
    """Distinct tokens with a pending update for ``base_version``."""
    return reg.db.execute("SELECT COUNT(DISTINCT token_id) FROM updates WHERE status='pending' AND base_version=?",
                          (base_version,)).fetchone()[0]


def pending_updates(reg: Registry, base_version: int) -> list[dict]:
    """The newest pending update of each token for ``base_version``, oldest first."""
    rows = reg.db.execute("SELECT id, token_id, received, epsilon, delta FROM updates WHERE status='pending' AND "
                          "base_version=? ORDER BY id", (base_version,)).fetchall()
    newest = {r["token_id"]: dict(r) for r in rows}
    return sorted(newest.values(), key=lambda r: r["id"])


def load_payload(reg: Registry, update_id: int) -> dict:
    """The JSON body of one stored update (a BLOB; updates from older hubs were files).

    Raises:
        HubError: the row or its file is gone.
    """
    row = reg.db.execute("SELECT body, path FROM updates WHERE id=?", (update_id,)).fetchone()
    if row is None:
        raise HubError(f"no update {update_id}")
    try:
        data = row["body"] if row["body"] is not None else Path(row["path"]).read_bytes()
        return json.loads(data)
    except (OSError, ValueError) as exc:
        raise HubError(f"update {update_id}: stored body unreadable ({exc})") from None


def claim_for_candidate(reg: Registry, *, version: int, base_version: int, update_ids: list[int], folder: Path,
                        devices: int, summary: dict) -> None:
    """Record a built candidate and move its updates to 'candidate', in one transaction.

    Raises:
        HubError: an update stopped being pending while the candidate was built (its token was
        revoked, or the device replaced it): nothing is recorded; build again.
    """
    with reg.transaction() as db:
        marks = ",".join("?" * len(update_ids))
        still = db.execute(f"SELECT COUNT(*) FROM updates WHERE status='pending' AND id IN ({marks})",
                           update_ids).fetchone()[0]
        if still != len(update_ids):
            raise HubError("device updates changed while the candidate was built (a token revoked or an update "
                           "replaced): not recorded; the next aggregation builds it again")
        if db.execute("SELECT 1 FROM candidates WHERE status='pending' AND base_version=?",
                      (base_version,)).fetchone():
            raise HubError(f"a candidate for version {base_version} already awaits approval")
        db.execute(f"UPDATE updates SET status='candidate', candidate=? WHERE id IN ({marks})", (version, *update_ids))
        db.execute("INSERT OR REPLACE INTO candidates (version, base_version, created, status, folder, devices, "
                   "summary) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                   (version, base_version, now_utc(), str(folder), devices, json.dumps(summary)))
