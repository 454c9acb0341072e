"""Diagnosis history on the device (SQLite): every graded result and every refused attempt.

A row carries the decision, P(referable), its reason, the model card, the patient id, eye and
operator, and both UTC and local time (with the device's UTC offset). Photos are stored only when
the user asks. A database from before issue 14 (table ``results``) is migrated on open.
"""
from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge_client.card import ModelCard
from edge_client.fileio import atomic_write

__all__ = ["History", "HistoryEntry", "OUTCOMES"]

# Decisions (edge_client.referral.DECISIONS) and the two outcomes of a refused photo.
OUTCOMES = ("refer", "no_referral", "uncertain_refer", "refused", "ungradable")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS diagnoses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    local_time TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    p_referable REAL,
    grade INTEGER,
    grade_name TEXT,
    probabilities TEXT,
    confidence REAL,
    refer INTEGER NOT NULL,
    model_version INTEGER NOT NULL,
    card TEXT,
    patient_id TEXT,
    eye TEXT,
    operator TEXT,
    refusal TEXT,
    photo_path TEXT
);
CREATE INDEX IF NOT EXISTS diagnoses_patient_eye ON diagnoses (patient_id, eye, id);
"""
_MIGRATE = """
INSERT INTO diagnoses (id, time, local_time, image_sha256, decision, reason, grade, grade_name, probabilities,
                       confidence, refer, model_version, photo_path)
SELECT id, time, time, image_sha256, CASE refer WHEN 1 THEN 'refer' ELSE 'no_referral' END,
       'recorded before the P(referable) rule (grade and confidence rule)', grade, grade_name, probabilities,
       confidence, refer, model_version, photo_path FROM results;
DROP TABLE results;
"""
_FIELDS = ["id", "time", "local_time", "image_sha256", "decision", "reason", "p_referable", "grade", "grade_name",
           "probabilities", "confidence", "refer", "model_version", "card", "patient_id", "eye", "operator",
           "refusal", "photo_path"]
CSV_COLUMNS = ["id", "local_time", "time_utc", "patient_id", "eye", "operator", "decision", "p_referable",
               "reason", "refusal", "grade", "grade_name", "confidence", "probabilities", "refer",
               "model_version", "model_created", "validated", "sensitivity", "specificity", "threshold",
               "calibrated", "temperature", "privacy", "image_sha256", "photo_path"]


@dataclass
class HistoryEntry:
    """One row. grade, grade_name, probabilities, confidence and p_referable are None for refusals;
    card is None only for rows recorded before model cards existed."""

    id: int
    time: str
    image_sha256: str
    grade: int | None
    grade_name: str | None
    probabilities: list[float] | None
    confidence: float | None
    refer: bool
    model_version: int
    photo_path: str | None
    decision: str = "no_referral"
    reason: str = ""
    p_referable: float | None = None
    card: ModelCard | None = None
    patient_id: str | None = None
    eye: str | None = None
    operator: str | None = None
    local_time: str = ""
    refusal: str | None = None


def _entry(row: tuple) -> HistoryEntry:
    r = dict(zip(_FIELDS, row))
    return HistoryEntry(
        id=r["id"], time=r["time"], image_sha256=r["image_sha256"], grade=r["grade"], grade_name=r["grade_name"],
        probabilities=None if r["probabilities"] is None else json.loads(r["probabilities"]),
        confidence=r["confidence"], refer=bool(r["refer"]), model_version=r["model_version"],
        photo_path=r["photo_path"], decision=r["decision"], reason=r["reason"], p_referable=r["p_referable"],
        card=None if r["card"] is None else ModelCard.from_dict(json.loads(r["card"])),
        patient_id=r["patient_id"], eye=r["eye"], operator=r["operator"], local_time=r["local_time"],
        refusal=r["refusal"])


def _cell(value) -> str:
    """A CSV cell; text a spreadsheet would run as a formula (=, +, -, @) is quoted with a '."""
    if value is None:
        return ""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class History:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=10)
        self.db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Move a pre-issue-14 ``results`` table into ``diagnoses``: all rows or, on any error, none."""
        self.db.execute("BEGIN IMMEDIATE")  # a second process opening the file waits here
        try:
            if self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='results'").fetchone():
                for statement in filter(str.strip, _MIGRATE.split(";")):
                    self.db.execute(statement)
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def close(self) -> None:
        self.db.close()

    def add(self, *, time: str, local_time: str, image_sha256: str, decision: str, reason: str, refer: bool,
            model_version: int, card: ModelCard | None, grade: int | None = None, grade_name: str | None = None,
            probabilities: list[float] | None = None, confidence: float | None = None,
            p_referable: float | None = None, patient_id: str | None = None, eye: str | None = None,
            operator: str | None = None, refusal: str | None = None, photo_path: str | None = None) -> int:
        """Append one row. Returns its id.

        Raises:
            ValueError: a decision outside OUTCOMES.
        """
        if decision not in OUTCOMES:
            raise ValueError(f"decision must be one of {OUTCOMES}, got {decision!r}")
        values = {"time": time, "local_time": local_time, "image_sha256": image_sha256, "decision": decision,
                  "reason": reason, "p_referable": p_referable, "grade": grade, "grade_name": grade_name,
                  "probabilities": None if probabilities is None else json.dumps(probabilities),
                  "confidence": confidence, "refer": int(refer), "model_version": model_version,
                  "card": None if card is None else json.dumps(card.to_dict(), ensure_ascii=False),
                  "patient_id": patient_id, "eye": eye, "operator": operator, "refusal": refusal,
                  "photo_path": photo_path}
        with self.db:
            cur = self.db.execute(f"INSERT INTO diagnoses ({', '.join(values)}) VALUES "
                                  f"({', '.join('?' * len(values))})", tuple(values.values()))
        return cur.lastrowid

    def entries(self) -> list[HistoryEntry]:
        """Every row, newest first."""
        rows = self.db.execute(f"SELECT {', '.join(_FIELDS)} FROM diagnoses ORDER BY id DESC").fetchall()
        return [_entry(r) for r in rows]

    def refused_in_a_row(self, patient_id: str, eye: str | None, *, since: str) -> int:
        """Refused attempts for one patient's eye since `since` (UTC text), newest back to the last
        row that was not a plain refusal (a graded result or an "ungradable" referral)."""
        rows = self.db.execute("SELECT decision FROM diagnoses WHERE patient_id = ? AND eye IS ? AND time >= ? "
                               "ORDER BY id DESC", (patient_id, eye, since)).fetchall()
        count = 0
        for (decision,) in rows:
            if decision != "refused":
                break
            count += 1
        return count

    def delete(self, entry_id: int) -> str | None:
        """Delete one entry; returns its stored photo path (for the caller to remove) or None."""
        row = self.db.execute("SELECT photo_path FROM diagnoses WHERE id=?", (entry_id,)).fetchone()
        if row is None:
            raise KeyError(f"no history entry {entry_id}")
        with self.db:
            self.db.execute("DELETE FROM diagnoses WHERE id=?", (entry_id,))
        return row[0]

    def export_csv(self, path: Path) -> Path:
        """Write every entry (newest first) as CSV (CSV_COLUMNS), atomically. Returns the path."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for e in self.entries():
            c = e.card
            writer.writerow([_cell(v) for v in (
                e.id, e.local_time, e.time, e.patient_id, e.eye, e.operator, e.decision,
                None if e.p_referable is None else f"{e.p_referable:.4f}", e.reason, e.refusal, e.grade,
                e.grade_name, None if e.confidence is None else f"{e.confidence:.4f}",
                None if e.probabilities is None else " ".join(f"{p:.4f}" for p in e.probabilities),
                int(e.refer), e.model_version, c and c.created,
                None if c is None else ("yes" if c.validated else "NOT VALIDATED"),
                None if c is None or c.sensitivity is None else f"{c.sensitivity:.4f}",
                None if c is None or c.specificity is None else f"{c.specificity:.4f}",
                None if c is None or c.threshold is None else f"{c.threshold:.4f}",
                None if c is None else ("yes" if c.calibrated else "no"),
                None if c is None or c.temperature is None else f"{c.temperature:.4f}",
                c and c.privacy_text, e.image_sha256, e.photo_path)])
        atomic_write(Path(path), buf.getvalue().encode("utf-8"))
        return Path(path)
