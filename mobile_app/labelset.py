"""A specialist's labelled photos, as a phone's document picker hands them over, made into a folder.

A document picker (Android's ACTION_OPEN_DOCUMENT) gives files, not a folder, so the photo paths
a labels CSV names relative to itself cannot be followed. The app accepts:
- one .zip holding labels.csv (at any depth) and the photos it names (the easy way: zip the
  folder), or
- one .csv together with its photos, chosen at once: each photo goes where the CSV names a file
  of that name.
Pure Python (no Kivy, no Android): the Android picker only copies the chosen documents into
the app's cache and calls `unpack`.
"""
from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path, PurePosixPath

__all__ = ["LabelSetError", "MAX_SET_BYTES", "unpack"]

MAX_SET_BYTES = 1 << 30       # 1 GiB of photos: more than a tablet round needs
MAX_FILES = 20_000


class LabelSetError(ValueError):
    """What was chosen is not a usable labelled set; the message says what to choose instead."""


def _safe_relative(name: str, source: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in name or not path.parts:
        raise LabelSetError(f"{source}: {name!r} points outside its folder: refused")
    return path


def unpack(chosen: list[str | Path], dest: str | Path) -> Path:
    """Lay out the chosen files as a folder with labels.csv and its photos.

    Args:
        chosen: local copies of what the user picked. dest: an empty folder to fill (created).

    Returns:
        The labels CSV to hand to `EdgeClient.list_labelled_photos`.

    Raises:
        LabelSetError: nothing usable (no CSV, two CSVs, a zip member or CSV path leaving the
            folder, over MAX_SET_BYTES or MAX_FILES).
    """
    chosen = [Path(p) for p in chosen]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    zips = [p for p in chosen if p.suffix.lower() == ".zip"]
    csvs = [p for p in chosen if p.suffix.lower() == ".csv"]
    if len(zips) == 1 and len(chosen) == 1:
        return _from_zip(zips[0], dest)
    if len(csvs) != 1 or zips:
        raise LabelSetError("choose one .zip with labels.csv and its photos, or one .csv together with its photos")
    return _from_csv(csvs[0], [p for p in chosen if p != csvs[0]], dest)


def _from_zip(archive: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > MAX_FILES or sum(m.file_size for m in members) > MAX_SET_BYTES:
                raise LabelSetError(f"{archive.name}: over {MAX_FILES} files or {MAX_SET_BYTES >> 20} MB")
            for m in members:
                _safe_relative(m.filename, archive.name)
            labels = sorted((m.filename for m in members if PurePosixPath(m.filename).name.lower() == "labels.csv"),
                            key=lambda n: len(PurePosixPath(n).parts))
            if not labels:
                raise LabelSetError(f"{archive.name}: no labels.csv inside")
            zf.extractall(dest)
    except zipfile.BadZipFile:
        raise LabelSetError(f"{archive.name}: not a readable zip file") from None
    return dest / PurePosixPath(labels[0])


def _from_csv(labels_csv: Path, photos: list[Path], dest: Path) -> Path:
    by_name = {p.name: p for p in photos}
    if sum(p.stat().st_size for p in photos) > MAX_SET_BYTES or len(photos) > MAX_FILES:
        raise LabelSetError(f"over {MAX_FILES} photos or {MAX_SET_BYTES >> 20} MB")
    target = dest / "labels.csv"
    shutil.copyfile(labels_csv, target)
    with labels_csv.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "image" not in reader.fieldnames:
            raise LabelSetError(f"{labels_csv.name}: the first line must name an 'image' column")
        named = [row.get("image") or "" for row in reader]
    for name in named:                       # a photo goes where the CSV says it is
        rel = _safe_relative(name, labels_csv.name)
        source = by_name.get(rel.name)
        if source is not None:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / rel)
    return target            # photos not chosen are reported per row by list_labelled_photos
