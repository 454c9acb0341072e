"""The queue of federated updates: pending -> approved (by the user) -> uploaded (or rejected).

Nothing leaves the device before the user approves it. ``upload`` sends approved updates with
the device's token; without a network they stay approved and the next call retries them. Kept
in EDGE_HOME/updates.sqlite; the payload is shown to the user as is (JSON, no hidden fields).

The payload (docs/CONTRACTS.md "Device update") is the noised head change and public constants
only: ``PAYLOAD_FIELDS`` names and explains every field, and ``describe_payload`` words what one
payload sends from that table, so what the device says is sent is what is sent. None of the
constants depends on the photos: not the number of patients or photos, not a patient's spend.
A round trained with a test seed is queued already rejected, ``"seeded": true``: it can never
be approved or uploaded (and the hub refuses such a payload too).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import requests

from edge_client.errors import EdgeError
from edge_client.privacy_figures import TEST_BUILD_TEXT, epsilon_str

__all__ = ["UPDATE_FORMAT", "PAYLOAD_FIELDS", "NOT_SENT", "SEEDED_MESSAGE", "QueuedUpdate", "UploadReport",
           "UpdateQueue", "build_payload", "describe_payload"]

UPDATE_FORMAT = "dopamine-head-update"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'uploaded', 'rejected')),
    base_version INTEGER NOT NULL, epsilon REAL NOT NULL, delta REAL NOT NULL, steps INTEGER NOT NULL,
    photos INTEGER NOT NULL, payload TEXT NOT NULL, uploaded TEXT, hub_id INTEGER, message TEXT);
"""
SEEDED_MESSAGE = "trained with a test seed (--seed): no DP guarantee, never uploaded"
_KEEP_APPROVED = {401, 403, 408, 429}  # token or transient problems: retry later with a fixed token


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Every field an update carries, in upload order, with what it tells the hub. A test checks that
# build_payload sends exactly these.
PAYLOAD_FIELDS: dict[str, str] = {
    "format": f"the constant {UPDATE_FORMAT!r}",
    "format_version": "the payload format's version (1)",
    "base_version": "the model version the change was trained on",
    "created": "when the round ran (UTC, to the second)",
    "delta_weight": "the noised change of the head's weights (5 x 512 numbers)",
    "delta_bias": "the noised change of the head's bias (5 numbers)",
    "steps": "DP-SGD steps (a public constant)",
    "sample_rate": "Poisson sampling rate q of each patient per step (a public constant, the same for any "
                   "number of patients)",
    "batch_divisor": "the constant each step's noised sum is divided by (not the number of patients)",
    "noise_multiplier": "σ, from the round's ε, q, steps and δ (public constants only)",
    "clipping_norm": "C, the clipping norm of each patient's summed gradient",
    "learning_rate": "the SGD step",
    "epsilon": "what this round alone costs each patient in it (from σ, q, steps, δ)",
    "delta": "δ of the device's accountant",
    "accountant": "the accountant ('rdp')",
    "epsilon_budget": "the device's cap on each patient's total ε over all of its rounds",
    "max_patients": "the device's public cap on patients (δ < 1/max_patients)",
    "seeded": "true for a test round with predictable noise (never uploaded; the hub refuses it)",
}
NOT_SENT = ("photos", "labels", "patient ids", "features", "per-patient gradients", "the number of photos or "
            "patients", "realised batch sizes", "any patient's spent ε", "accuracy on the device's photos")


def build_payload(*, base_version: int, delta_weight: np.ndarray, delta_bias: np.ndarray, steps: int,
                  sample_rate: float, batch_divisor: float, noise_multiplier: float, clipping_norm: float,
                  learning_rate: float, epsilon: float, delta: float, epsilon_budget: float, max_patients: int,
                  seeded: bool) -> dict:
    """The update as uploaded: the noised head change and public constants only (``PAYLOAD_FIELDS``).

    Args:
        epsilon: this round's own ε (a function of σ, q, steps and δ), never a patient's total.
        epsilon_budget: the device's per-patient cap. seeded: the round used a test seed.
        The rest: the round's public constants (``training.RoundSettings``) and σ.

    Returns:
        The JSON-ready dict, fields in ``PAYLOAD_FIELDS`` order.
    """
    values = {"format": UPDATE_FORMAT, "format_version": 1, "base_version": int(base_version), "created": _now(),
              "delta_weight": np.asarray(delta_weight, np.float32).astype(float).tolist(),
              "delta_bias": np.asarray(delta_bias, np.float32).astype(float).tolist(),
              "steps": int(steps), "sample_rate": float(sample_rate), "batch_divisor": float(batch_divisor),
              "noise_multiplier": float(noise_multiplier), "clipping_norm": float(clipping_norm),
              "learning_rate": float(learning_rate), "epsilon": float(epsilon), "delta": float(delta),
              "accountant": "rdp", "epsilon_budget": float(epsilon_budget), "max_patients": int(max_patients),
              "seeded": bool(seeded)}
    return {key: values[key] for key in PAYLOAD_FIELDS}


def describe_payload(payload: dict) -> list[str]:
    """What one payload sends, in words, one line per field (``PAYLOAD_FIELDS``), then what it never sends.

    Raises:
        ValueError: a payload field the table does not explain (the words would not match).
    """
    unknown = sorted(set(payload) - set(PAYLOAD_FIELDS))
    if unknown:
        raise ValueError(f"payload fields without a description: {', '.join(unknown)}")
    lines = []
    for key in PAYLOAD_FIELDS:
        if key not in payload:
            continue
        value = payload[key]
        if key == "delta_weight":
            shown = f"{len(value)} x {len(value[0]) if value else 0} numbers"
        elif key == "delta_bias":
            shown = f"{len(value)} numbers"
        elif key in ("epsilon", "epsilon_budget"):  # the exact value sent, and as people read ε: rounded up
            note = f"; {TEST_BUILD_TEXT}" if payload.get("seeded") else ""
            shown = f"{json.dumps(value)} (ε = {epsilon_str(value)}{note})"
        else:
            shown = json.dumps(value)
        lines.append(f"{key} = {shown}: {PAYLOAD_FIELDS[key]}")
    lines.append("never sent: " + ", ".join(NOT_SENT))
    return lines


@dataclass
class QueuedUpdate:
    id: int
    created: str
    status: str
    base_version: int
    epsilon: float
    delta: float
    steps: int
    photos: int
    uploaded: str | None
    hub_id: int | None
    message: str | None


@dataclass
class UploadReport:
    """What one upload attempt did. ``waiting``: still approved (offline, hub down, token refused)."""

    uploaded: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class UpdateQueue:
    """Args: home: EDGE_HOME."""

    def __init__(self, home: Path) -> None:
        Path(home).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(Path(home) / "updates.sqlite", timeout=10)
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add(self, payload: dict, *, photos: int) -> int:
        """Queue an update as pending (awaiting the user's approval). Returns its id.

        A seeded payload (``"seeded": true``: a test round, no DP guarantee) is queued already
        rejected, so it can be shown but never approved or uploaded.
        """
        seeded = bool(payload.get("seeded"))
        with self.db:
            cur = self.db.execute(
                "INSERT INTO updates (created, status, base_version, epsilon, delta, steps, photos, payload, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_now(), "rejected" if seeded else "pending", payload["base_version"], payload["epsilon"],
                 payload["delta"], payload["steps"], photos, json.dumps(payload, separators=(",", ":")),
                 SEEDED_MESSAGE if seeded else None))
        return cur.lastrowid

    def list(self, status: str | None = None) -> list[QueuedUpdate]:
        """Queued updates, newest first (optionally one status)."""
        sql = ("SELECT id, created, status, base_version, epsilon, delta, steps, photos, uploaded, hub_id, message "
               "FROM updates")
        rows = self.db.execute(sql + (" WHERE status=?" if status else "") + " ORDER BY id DESC",
                               (status,) if status else ()).fetchall()
        return [QueuedUpdate(*r) for r in rows]

    def payload(self, update_id: int) -> dict:
        """The exact JSON that would be uploaded. Raises KeyError for an unknown id."""
        row = self.db.execute("SELECT payload FROM updates WHERE id=?", (update_id,)).fetchone()
        if row is None:
            raise KeyError(f"no queued update {update_id}")
        return json.loads(row[0])

    def _set(self, update_id: int, *, expect: tuple[str, ...], status: str, **extra) -> None:
        row = self.db.execute("SELECT status FROM updates WHERE id=?", (update_id,)).fetchone()
        if row is None:
            raise KeyError(f"no queued update {update_id}")
        if row[0] not in expect:
            raise EdgeError(f"update {update_id} is {row[0]}, not {' or '.join(expect)}")
        cols = ", ".join(["status=?"] + [f"{k}=?" for k in extra])
        with self.db:
            self.db.execute(f"UPDATE updates SET {cols} WHERE id=?", (status, *extra.values(), update_id))

    def approve(self, update_id: int) -> None:
        """The user's consent to upload this update. Raises KeyError, EdgeError (not pending, or seeded)."""
        if self.payload(update_id).get("seeded"):
            raise EdgeError(f"update {update_id}: {SEEDED_MESSAGE}")
        self._set(update_id, expect=("pending",), status="approved")

    def discard(self, update_id: int) -> None:
        """Drop a pending or approved update; its ε stays spent (it was charged when trained)."""
        self._set(update_id, expect=("pending", "approved"), status="rejected", message="discarded by the user")

    def upload(self, server_url: str, token: str, *, timeout: float = 20.0, ca_file: str | None = None,
               insecure_http: bool = False) -> UploadReport:
        """Send every approved update to ``server_url/v1/updates`` with ``Authorization: Bearer``.

        Each upload carries an id, the sha256 of its exact bytes (``Idempotency-Key``): the hub
        treats a resend (an answer lost on the way back) as the same upload, so retrying is safe. Redirects are never
        followed (the token would go with them); plain ``http://`` to another host is refused
        unless ``insecure_http``.

        Offline, a dead hub, 5xx, 429, a redirect or a refused token: the update stays approved
        (retried next time). A hub rejection of the update itself (malformed, too large, old base
        version, replayed): rejected, with the hub's message. Never raises for network problems.

        Raises:
            SyncError, InsecureTransportError: a URL the token must not be sent to. ValueError: no token.
        """
        from edge_client.fetcher import check_transport

        base = check_transport(server_url, insecure_http=insecure_http)
        token = (token or "").strip()
        if not token or any(c.isspace() for c in token):
            raise ValueError("an upload token is required (one line, from `python -m hub token issue`)")
        report = UploadReport()
        url = base + "/v1/updates"
        for item in sorted(self.list("approved"), key=lambda u: u.id):
            body = json.dumps(self.payload(item.id), separators=(",", ":")).encode()
            try:
                resp = requests.post(url, data=body, timeout=timeout, verify=ca_file or True, allow_redirects=False,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                              "Idempotency-Key": hashlib.sha256(body).hexdigest()})
            except requests.RequestException as exc:
                report.waiting.append(item.id)
                msg = f"update {item.id}: hub not reachable, will retry ({type(exc).__name__})"
                self._note(item.id, msg)
                report.messages.append(msg)
                continue
            try:
                answer = resp.json()
            except ValueError:
                answer = {}
            answer = answer if isinstance(answer, dict) else {}
            if resp.status_code in (200, 202):  # 200: the hub already had these exact bytes
                self._set(item.id, expect=("approved",), status="uploaded", uploaded=_now(),
                          hub_id=answer.get("id"), message=answer.get("status"))
                report.uploaded.append(item.id)
                report.messages.append(f"update {item.id}: uploaded (hub id {answer.get('id')})")
                continue
            if 300 <= resp.status_code < 400:
                msg = (f"update {item.id}: the hub answered a redirect ({resp.status_code} to "
                       f"{resp.headers.get('Location', '?')}): not followed, will retry")
            else:
                msg = f"update {item.id}: hub answered {resp.status_code}: {answer.get('error', resp.reason)}"
            if resp.status_code in _KEEP_APPROVED or 300 <= resp.status_code < 400 or resp.status_code >= 500:
                report.waiting.append(item.id)
                self._note(item.id, msg)
            else:
                report.rejected.append(item.id)
                self._set(item.id, expect=("approved",), status="rejected", message=msg)
            report.messages.append(msg)
        return report

    def _note(self, update_id: int, message: str) -> None:
        with self.db:
            self.db.execute("UPDATE updates SET message=? WHERE id=?", (message, update_id))
