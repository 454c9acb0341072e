"""Samples -> arrays through the one preprocessing (`edge_client.preprocess`), optionally cached.

Training and the device preprocess identically because both call `preprocess_image`; nothing
here uses torch transforms.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edge_client.preprocess import ImageError, PreprocessConfig, load_image, preprocess_image
from trainer.data.datasets import DatasetError, Sample


def _cache_key(samples: list[Sample], cfg: PreprocessConfig) -> str:
    """Hash of the config and each file's (path, mtime, size): any change makes a new key."""
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for s in samples:
        st = s.image_path.stat()
        h.update(f"{s.image_path.resolve()}\0{st.st_mtime_ns}\0{st.st_size}\0{s.grade}\0{s.patient_id}\n".encode())
    return h.hexdigest()[:32]


def load_arrays(samples: list[Sample], cfg: PreprocessConfig, *,
                cache_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode and preprocess every sample.

    Args:
        samples: the samples, in the order wanted.
        cfg: the preprocessing (the same one goes into the checkpoint).
        cache_dir: optional folder (e.g. `<data>/.cache`) for an .npz keyed by files and config.
    Returns:
        X float32 (N, 3, S, S) normalised; y int64 (N,); patient index int64 (N,), 0..P-1 in order
        of first appearance within `samples`.
    Raises:
        DatasetError: one line per image that fails to decode (truncated, corrupt, grayscale...).
    """
    s = cfg.image_size
    pids: dict[str, int] = {}
    y = np.array([smp.grade for smp in samples], dtype=np.int64)
    patient = np.array([pids.setdefault(smp.patient_id, len(pids)) for smp in samples], dtype=np.int64)
    cache_file = None
    if cache_dir is not None and samples:
        try:
            cache_file = Path(cache_dir) / f"arrays-{_cache_key(samples, cfg)}.npy"
        except OSError:
            cache_file = None  # a missing file is reported by the decode loop below
        if cache_file is not None and cache_file.is_file():
            try:
                x = np.load(cache_file, allow_pickle=False)
                if x.shape == (len(samples), 3, s, s) and x.dtype == np.float32:
                    return x, y, patient
            except (OSError, ValueError):
                pass  # a damaged cache is rebuilt
    x = np.empty((len(samples), 3, s, s), dtype=np.float32)
    problems = []
    for i, smp in enumerate(samples):
        try:
            x[i] = preprocess_image(load_image(smp.image_path, max_pixels=cfg.max_pixels), cfg)
        except ImageError as exc:
            problems.append(f"sample {smp.sample_id!r}: {exc}")
    if problems:
        raise DatasetError(problems, f"{len(problems)} image(s) could not be decoded:")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.save(fh, x, allow_pickle=False)
        os.replace(tmp, cache_file)
    return x, y, patient
