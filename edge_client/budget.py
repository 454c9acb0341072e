"""The device's privacy accountant: one per photo set, kept in EDGE_HOME/training.sqlite.

A photo set is identified by the sha256 of its sorted image sha256s. Every round (personal or
federated: they share the budget) is recorded with its public constants (σ, q, steps) and the
set it trained on. The state lives outside models/, so it survives model updates.

Why overlaps count: clinics add photos over time, and a set with one more photo has another id.
A photo's privacy loss is the composition of every round that touched it, so the spend of a set
is the composition of every round on ANY set sharing a photo with it (an upper bound for each of
its photos). A new set never starts with a fresh budget for old photos.
"""
from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge_client.errors import EdgeError
from edge_client.rdp import epsilon_of_history

__all__ = ["BudgetExceeded", "BudgetStatus", "Budget", "photo_set_id", "DEFAULT_BUDGET", "DEFAULT_DELTA"]

DEFAULT_BUDGET = 10.0
DEFAULT_DELTA = 1e-5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS photo_sets (
    set_id TEXT PRIMARY KEY, created TEXT NOT NULL, budget REAL NOT NULL, delta REAL NOT NULL);
CREATE TABLE IF NOT EXISTS set_photos (
    set_id TEXT NOT NULL REFERENCES photo_sets(set_id), image_sha256 TEXT NOT NULL,
    PRIMARY KEY (set_id, image_sha256));
CREATE INDEX IF NOT EXISTS set_photos_image ON set_photos(image_sha256);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, set_id TEXT NOT NULL REFERENCES photo_sets(set_id),
    time TEXT NOT NULL, mode TEXT NOT NULL, noise_multiplier REAL NOT NULL, sample_rate REAL NOT NULL,
    steps INTEGER NOT NULL, clipping_norm REAL NOT NULL, model_version INTEGER, epsilon_after REAL NOT NULL);
"""


class BudgetExceeded(EdgeError):
    """A round would take the photo set past its privacy budget; nothing was trained."""


@dataclass
class BudgetStatus:
    """Where one photo set stands. ``spent`` composes every round touching any of its photos."""

    set_id: str
    photos: int
    budget: float
    delta: float
    spent: float
    rounds: int

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget - self.spent)


def photo_set_id(image_hashes: list[str]) -> str:
    """sha256 over the sorted, de-duplicated image sha256s (hex)."""
    return hashlib.sha256("\n".join(sorted(set(image_hashes))).encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Budget:
    """The accountant store of one device.

    Args:
        home: EDGE_HOME (the file is ``training.sqlite`` there).
    """

    def __init__(self, home: Path) -> None:
        Path(home).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(Path(home) / "training.sqlite", timeout=10)
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def register(self, image_hashes: list[str], *, budget: float = DEFAULT_BUDGET,
                 delta: float = DEFAULT_DELTA) -> str:
        """Record a photo set (idempotent). Returns its id.

        A known set keeps its stored budget and δ: raising a budget after spending is refused.

        Raises:
            BudgetExceeded: a different budget or δ asked for a known set.
        """
        set_id = photo_set_id(image_hashes)
        row = self.db.execute("SELECT budget, delta FROM photo_sets WHERE set_id=?", (set_id,)).fetchone()
        if row is not None:
            if budget > row[0] + 1e-12 or delta != row[1]:
                raise BudgetExceeded(f"this photo set's budget is fixed at epsilon={row[0]:g}, delta={row[1]:g}; "
                                     f"it cannot be changed after training started")
            return set_id
        if not budget > 0:
            raise ValueError(f"budget must be > 0, got {budget}")
        with self.db:
            self.db.execute("INSERT INTO photo_sets VALUES (?, ?, ?, ?)", (set_id, _now(), float(budget), float(delta)))
            self.db.executemany("INSERT OR IGNORE INTO set_photos VALUES (?, ?)",
                                [(set_id, h) for h in sorted(set(image_hashes))])
        return set_id

    def history(self, set_id: str) -> list[tuple[float, float, int]]:
        """(σ, q, steps) of every round on any set sharing a photo with ``set_id``."""
        rows = self.db.execute(
            "SELECT noise_multiplier, sample_rate, steps FROM rounds WHERE set_id IN ("
            " SELECT DISTINCT b.set_id FROM set_photos a JOIN set_photos b ON a.image_sha256 = b.image_sha256"
            " WHERE a.set_id = ?) ORDER BY id", (set_id,)).fetchall()
        return [(float(s), float(q), int(t)) for s, q, t in rows]

    def status(self, set_id: str) -> BudgetStatus:
        """The set's budget, δ and spend so far.

        Raises:
            KeyError: an unknown set id.
        """
        row = self.db.execute("SELECT budget, delta FROM photo_sets WHERE set_id=?", (set_id,)).fetchone()
        if row is None:
            raise KeyError(f"unknown photo set {set_id[:12]}")
        photos = self.db.execute("SELECT COUNT(*) FROM set_photos WHERE set_id=?", (set_id,)).fetchone()[0]
        history = self.history(set_id)
        return BudgetStatus(set_id, photos, row[0], row[1], epsilon_of_history(history, delta=row[1]), len(history))

    def check(self, set_id: str, *, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """ε the set would have after this round. Raises BudgetExceeded when over its budget."""
        st = self.status(set_id)
        after = epsilon_of_history(self.history(set_id) + [(noise_multiplier, sample_rate, steps)], delta=st.delta)
        if after > st.budget:
            raise BudgetExceeded(f"this round would take the photo set to epsilon={after:.2f}, over its budget "
                                 f"{st.budget:g} (spent {st.spent:.2f} in {st.rounds} rounds): no training done")
        return after

    def record(self, set_id: str, *, mode: str, noise_multiplier: float, sample_rate: float, steps: int,
               clipping_norm: float, model_version: int | None) -> float:
        """Charge a round to the set (call before its result is used). Returns ε after it.

        Raises:
            BudgetExceeded: the round does not fit (nothing recorded).
        """
        after = self.check(set_id, noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        with self.db:
            self.db.execute("INSERT INTO rounds (set_id, time, mode, noise_multiplier, sample_rate, steps, "
                            "clipping_norm, model_version, epsilon_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (set_id, _now(), mode, float(noise_multiplier), float(sample_rate), int(steps),
                             float(clipping_norm), model_version, after))
        return after
