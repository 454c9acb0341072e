"""Images for int8 calibration and for the parity report, preprocessed exactly as on a device.

Calibration statistics are not covered by ε (docs/DESIGN.md), so the default is synthetic fundus
photos (``trainer.data.synth``), never training images. A folder can be given instead: either an
APTOS-layout set (``train.csv`` + ``train_images/``, labels used) or any folder of photos.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edge_client.preprocess import ImageError, PreprocessConfig, preprocess_file, preprocess_image
from export import ExportError
from trainer.data.synth import APTOS_PROBS, render_fundus

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
CALIBRATION_SEED = 7_000_001  # different seeds: calibration and parity images never coincide
PARITY_SEED = 9_000_001


def synthetic_images(n: int, cfg: PreprocessConfig, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render ``n`` synthetic fundus photos in memory and preprocess them.

    Args:
        n: number of images (>= 1).
        cfg: the checkpoint's preprocessing (image size, normalisation, crop threshold).
        seed: same seed, same images.

    Returns:
        (X float32 (n, 3, S, S) normalised NCHW, y int64 (n,) grades drawn with APTOS' imbalance).
    """
    if n < 1:
        raise ExportError(f"need at least one synthetic image, got {n}")
    grades = np.random.default_rng(seed).choice(5, size=n, p=np.asarray(APTOS_PROBS) / sum(APTOS_PROBS))
    images = [preprocess_image(render_fundus(int(g), cfg.image_size, np.random.default_rng([seed, i])), cfg)
              for i, g in enumerate(grades)]
    return np.stack(images).astype(np.float32), grades.astype(np.int64)


def _labelled_files(folder: Path) -> tuple[list[Path], list[int]] | None:
    """APTOS layout: (image paths, grades) from train.csv, or None when there is no train.csv."""
    table = folder / "train.csv"
    if not table.is_file():
        return None
    files, grades = [], []
    with table.open(newline="") as handle:
        for row_no, row in enumerate(csv.DictReader(handle), start=2):
            try:
                code, grade = row["id_code"], int(row["diagnosis"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ExportError(f"{table} row {row_no}: needs id_code and an integer diagnosis") from exc
            matches = [folder / "train_images" / f"{code}{s}" for s in (".png", ".jpg", ".jpeg")]
            found = next((p for p in matches if p.is_file()), None)
            if found is None:
                raise ExportError(f"{table} row {row_no}: no image train_images/{code}.png")
            files.append(found)
            grades.append(grade)
    return files, grades


def load_folder(folder: str | Path, cfg: PreprocessConfig, *, limit: int | None = None,
                need_labels: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Preprocess the photos in a folder (sorted, so the result is reproducible).

    Args:
        folder: an APTOS-layout set, or any folder holding photos (searched recursively).
        cfg: the checkpoint's preprocessing.
        limit: use at most this many images (the first ones in sorted order).
        need_labels: refuse a folder without ``train.csv`` labels (for the parity set).

    Returns:
        (X float32 (N, 3, S, S), y int64 (N,) or None when the folder has no labels).

    Raises:
        ExportError: the folder is missing, holds no usable photo, or an image cannot be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"{folder}: image folder not found")
    labelled = _labelled_files(folder)
    if labelled is None and need_labels:
        raise ExportError(f"{folder}: no train.csv with labels (APTOS layout: train.csv + train_images/)")
    if labelled is not None:
        files, grades = labelled
    else:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        grades = None
    if limit is not None:
        files = files[:limit]
        grades = grades[:limit] if grades is not None else None
    if not files:
        raise ExportError(f"{folder}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        images = np.stack([preprocess_file(p, cfg) for p in files]).astype(np.float32)
    except ImageError as exc:
        raise ExportError(str(exc)) from exc
    return images, None if grades is None else np.asarray(grades, dtype=np.int64)
