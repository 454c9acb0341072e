"""The specialist's labels: a CSV ``image,grade[,patient]`` with paths relative to the CSV.

Every bad row is reported at once (row numbers are file lines: the header is row 1). Without a
patient column each photo is its own patient (the privacy unit of the device's DP-SGD).
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from edge_client.errors import EdgeError

__all__ = ["LabelsError", "LabelledPhoto", "read_labels", "MAX_PHOTO_BYTES"]

MAX_PHOTO_BYTES = 50 * 1024 * 1024
GRADES = range(5)


class LabelsError(EdgeError):
    """A labels CSV with bad rows; ``problems`` lists every one ("labels.csv row 7: ...")."""

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = problems


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    grade: int
    patient: str
    sha256: str
    row: int


def read_labels(csv_path: str | Path) -> list[LabelledPhoto]:
    """Read and check a labels CSV (files exist, grades 0-4, no duplicate photo).

    Returns:
        The photos in file order, each with its sha256.

    Raises:
        LabelsError: listing every bad row, or a missing/empty/unreadable file.
    """
    csv_path = Path(csv_path)
    name = csv_path.name
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError([f"{csv_path}: cannot read the labels file ({exc})"]) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["image", "grade"]:
        raise LabelsError([f"{csv_path}: the first line must be the header image,grade[,patient]"])
    header = [c.strip().lower() for c in rows[0]]
    has_patient = len(header) > 2 and header[2] == "patient"
    problems: list[str] = []
    photos: list[LabelledPhoto] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # blank line
        where = f"{name} row {line}"
        if len(row) < 2:
            problems.append(f"{where}: needs at least image and grade")
            continue
        image, grade_text = row[0].strip(), row[1].strip()
        patient = row[2].strip() if has_patient and len(row) > 2 and row[2].strip() else image
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
        if grade in GRADES:
            photos.append(LabelledPhoto(path, grade, patient, digest, line))
    if problems:
        raise LabelsError(problems)
    if not photos:
        raise LabelsError([f"{csv_path}: no labelled photos"])
    return photos
