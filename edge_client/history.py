"""Diagnosis history on the device (SQLite). Photos are stored only when the user asks."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge_client.fileio import atomic_write

__all__ = ["History", "HistoryEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    grade INTEGER NOT NULL,
    grade_name TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    confidence REAL NOT NULL,
    refer INTEGER NOT NULL,
    model_version INTEGER NOT NULL,
    photo_path TEXT
);
"""
_FIELDS = ["id", "time", "image_sha256", "grade", "grade_name", "probabilities", "confidence",
           "refer", "model_version", "photo_path"]


@dataclass
class HistoryEntry:
    id: int
    time: str
    image_sha256: str
    grade: int
    grade_name: str
    probabilities: list[float]
    confidence: float
    refer: bool
    model_version: int
    photo_path: str | None


class History:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=10)
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add(self, *, time: str, image_sha256: str, grade: int, grade_name: str, probabilities: list[float],
            confidence: float, refer: bool, model_version: int, photo_path: str | None = None) -> int:
        with self.db:
            cur = self.db.execute(
                "INSERT INTO results (time, image_sha256, grade, grade_name, probabilities, confidence, "
                "refer, model_version, photo_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time, image_sha256, grade, grade_name, json.dumps(probabilities), confidence,
                 int(refer), model_version, photo_path))
        return cur.lastrowid

    def entries(self) -> list[HistoryEntry]:
        rows = self.db.execute(f"SELECT {', '.join(_FIELDS)} FROM results ORDER BY id DESC").fetchall()
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], bool(r[7]), r[8], r[9])
                for r in rows]

    def delete(self, entry_id: int) -> str | None:
        """Delete one entry; returns its stored photo path (for the caller to remove) or None."""
        row = self.db.execute("SELECT photo_path FROM results WHERE id=?", (entry_id,)).fetchone()
        if row is None:
            raise KeyError(f"no history entry {entry_id}")
        with self.db:
            self.db.execute("DELETE FROM results WHERE id=?", (entry_id,))
        return row[0]

    def export_csv(self, path: Path) -> Path:
        """Write every entry (newest first) as CSV, atomically. Returns the path."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(_FIELDS)
        for e in self.entries():
            writer.writerow([e.id, e.time, e.image_sha256, e.grade, e.grade_name,
                             " ".join(f"{p:.4f}" for p in e.probabilities), f"{e.confidence:.4f}",
                             int(e.refer), e.model_version, e.photo_path or ""])
        atomic_write(Path(path), buf.getvalue().encode("utf-8"))
        return Path(path)
