"""The specialist's labels: a CSV ``image,grade,patient`` with paths relative to the CSV.

The patient column is required: the device's privacy accountant protects patients, not files,
so every photo must say whose eye it shows (the clinic's own patient id; on the device it is
stored only as a salted hash, ``edge_client.budget``, and never uploaded). Every bad row is
reported at once (row numbers are file lines: the header is row 1).
"""
from __future__ import annotations

import csv
import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from edge_client.errors import EdgeError

__all__ = ["LabelsError", "LabelledPhoto", "read_labels", "normalise_patient_id", "MAX_PHOTO_BYTES", "HEADER",
           "MAX_PATIENT_ID_CHARS"]

MAX_PHOTO_BYTES = 50 * 1024 * 1024
MAX_PATIENT_ID_CHARS = 200
GRADES = range(5)
HEADER = "image,grade,patient"


class LabelsError(EdgeError):
    """A labels CSV with bad rows; ``problems`` lists every one ("labels.csv row 7: ...")."""

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = problems


@dataclass(frozen=True)
class LabelledPhoto:
    """One labelled photo. ``patient`` is the clinic's id as written in the CSV (shown on this device only)."""

    path: Path
    grade: int
    patient: str
    sha256: str
    row: int


def normalise_patient_id(patient: str) -> str:
    """The form a patient id is keyed by: Unicode NFKC, case-folded, inner whitespace collapsed.

    "P-001", "p-001 " and "P‑001" typed on different days are one patient. Merging two ids
    that differ only in case can only over-count a patient's spend, never under-count it.
    """
    return " ".join(unicodedata.normalize("NFKC", patient).casefold().split())


def _patient_problem(patient: str) -> str | None:
    if not patient:
        return "no patient id"
    if len(patient) > MAX_PATIENT_ID_CHARS:
        return f"patient id is over {MAX_PATIENT_ID_CHARS} characters"
    if any(unicodedata.category(c) == "Cc" for c in patient):
        return "patient id holds a control character"
    return None


def read_labels(csv_path: str | Path) -> list[LabelledPhoto]:
    """Read and check a labels CSV (header ``image,grade,patient``; files exist, grades 0-4, a patient
    id on every row, no duplicate photo).

    Returns:
        The photos in file order, each with its sha256.

    Raises:
        LabelsError: listing every bad row ("labels.csv row 7: no patient id"), or a
        missing/empty/unreadable file, or a header without the patient column.
    """
    csv_path = Path(csv_path)
    name = csv_path.name
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError([f"{csv_path}: cannot read the labels file ({exc})"]) from None
    rows = list(csv.reader(text.splitlines()))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["image", "grade"]:
        raise LabelsError([f"{csv_path}: the first line must be the header {HEADER}"])
    if header[2:3] != ["patient"]:
        raise LabelsError([f"{csv_path}: no patient column: the first line must be the header {HEADER} (the "
                           f"privacy budget is kept per patient, so every photo needs its patient id)"])
    problems: list[str] = []
    photos: list[LabelledPhoto] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # blank line
        where = f"{name} row {line}"
        if len(row) < 2:
            problems.append(f"{where}: needs image, grade and patient")
            continue
        image, grade_text = row[0].strip(), row[1].strip()
        patient = row[2].strip() if len(row) > 2 else ""
        bad_patient = _patient_problem(patient)
        if bad_patient:
            problems.append(f"{where}: {bad_patient}")
        try:
            grade = int(grade_text)
        except ValueError:
            grade = -1
        if grade not in GRADES:
            problems.append(f"{where}: grade must be an integer 0-4, got {grade_text!r}")
        path = (csv_path.parent / image) if image else None
        if path is None:
            problems.append(f"{where}: empty image path")
            continue
        try:
            if path.stat().st_size > MAX_PHOTO_BYTES:
                problems.append(f"{where}: {image} is over {MAX_PHOTO_BYTES // 2**20} MB")
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            problems.append(f"{where}: cannot read {image} ({exc.strerror or exc})")
            continue
        if digest in seen:
            problems.append(f"{where}: {image} is the same photo as row {seen[digest]}")
            continue
        seen[digest] = line
        if grade in GRADES and not bad_patient:
            photos.append(LabelledPhoto(path, grade, patient, digest, line))
    if problems:
        raise LabelsError(problems)
    if not photos:
        raise LabelsError([f"{csv_path}: no labelled photos"])
    return photos
