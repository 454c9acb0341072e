"""Photo-quality gate: refuse a photo the model should not grade, and say why.

Measured on the fundus crop resized to the model's input size (the preprocessing's own crop):
  * brightness: mean gray level of the bright (fundus) pixels inside the central disc;
  * fundus circle: the fraction of the central disc that is bright, and the fraction of the
    square's corners (outside the circle) that is bright: a fundus is a bright disc on black,
    a scene, a document or noise is bright into the corners;
  * sharpness: variance of the 4-neighbour Laplacian of the gray image inside the disc (away
    from the circle's rim, whose edge would make any blur look sharp).
Thresholds come from the manifest's "quality" object; missing keys take DEFAULTS.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from edge_client.errors import PhotoQualityError
from edge_client.preprocess import PreprocessConfig, crop_to_fundus

__all__ = ["DEFAULTS", "QualityReport", "measure", "check_quality"]

DEFAULTS = {"min_fundus_fraction": 0.25, "min_brightness": 20.0, "max_brightness": 235.0,
            "min_sharpness": 5.0, "max_outside_fraction": 0.35}


@dataclass
class QualityReport:
    fundus_fraction: float
    outside_fraction: float
    brightness: float
    sharpness: float

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


@functools.lru_cache(maxsize=4)
def _masks(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disc, corner and inner-disc masks of an s x s square (cached: the same every photo)."""
    yy, xx = np.mgrid[0:s, 0:s]
    r = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) / (s / 2)
    return r <= 0.95, r >= 1.08, r <= 0.8


def measure(rgb: np.ndarray, cfg: PreprocessConfig) -> QualityReport:
    """Args: rgb (H,W,3) uint8; cfg: the manifest's preprocessing. Returns: the measures."""
    square = crop_to_fundus(rgb, cfg.crop_threshold)
    s = cfg.image_size
    img = np.asarray(Image.fromarray(square).resize((s, s), Image.BILINEAR), dtype=np.float32)
    gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
    bright = img.max(axis=2) > cfg.crop_threshold
    disc, corners, inner = _masks(s)
    fundus = bright & disc
    brightness = float(gray[fundus].mean()) if fundus.any() else float(gray[disc].mean())
    lap = (gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1])
    region = (inner & bright)[1:-1, 1:-1]
    # Erode the region by one pixel so the fundus border (bright next to black) is not counted.
    region &= np.roll(region, 2, 0) & np.roll(region, -2, 0) & np.roll(region, 2, 1) & np.roll(region, -2, 1)
    sharpness = float(lap[region].var()) if region.sum() > 16 else 0.0
    return QualityReport(fundus_fraction=float(fundus.sum() / disc.sum()),
                         outside_fraction=float(bright[corners].mean()),
                         brightness=brightness, sharpness=sharpness)


def check_quality(rgb: np.ndarray, cfg: PreprocessConfig, thresholds: dict | None = None) -> QualityReport:
    """Measure a photo and refuse it when unusable.

    Args:
        rgb: (H,W,3) uint8 photo. cfg: preprocessing. thresholds: the manifest's "quality".

    Returns:
        The QualityReport of an accepted photo.

    Raises:
        PhotoQualityError: with .reason in {"too_dark", "no_fundus", "too_bright", "blurry"}
        and a .hint for the user.
    """
    t = {**DEFAULTS, **(thresholds or {})}
    m = measure(rgb, cfg)
    d = m.to_dict()
    if m.brightness < t["min_brightness"]:
        raise PhotoQualityError("too_dark", f"photo too dark (brightness {m.brightness:.0f}, needs "
                                f"{t['min_brightness']:.0f}): use the camera's light and retake", d)
    if m.fundus_fraction < t["min_fundus_fraction"] or m.outside_fraction > t["max_outside_fraction"]:
        raise PhotoQualityError("no_fundus", f"no fundus circle found (disc {m.fundus_fraction:.0%} bright, "
                                f"corners {m.outside_fraction:.0%} bright): photograph the retina "
                                f"through the fundus lens, centred", d)
    if m.brightness > t["max_brightness"]:
        raise PhotoQualityError("too_bright", f"photo overexposed (brightness {m.brightness:.0f}, max "
                                f"{t['max_brightness']:.0f}): lower the flash and retake", d)
    if m.sharpness < t["min_sharpness"]:
        raise PhotoQualityError("blurry", f"photo too blurry (sharpness {m.sharpness:.1f}, needs "
                                f"{t['min_sharpness']:.1f}): hold still, focus and retake", d)
    return m
