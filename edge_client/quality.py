"""Photo gate, image side: refuse what is not a gradable colour fundus photo, and say why.

Measured on the fundus crop (the preprocessing's own crop) at ANALYSIS_SIZE px (smaller photos at
their own size), counting only pixels that come from the photo (not the crop's black padding):
  * fundus circle: the share of the central disc that is bright, and the share of the square's
    corners (outside the circle) that is bright: a fundus is a bright disc on black; a scene, a
    document or a screen is bright into the corners;
  * exposure: mean gray level of the fundus pixels, and the share of them whose green channel is
    burnt out (>= 245): green carries the vessels' and lesions' contrast, red saturates first anyway;
  * colour: a retina photographed in white light is red-orange. Chroma (how far from gray), the
    red and green shares of R+G+B, and the share of pixels with retina hues (red the strongest channel) tell a
    colour fundus photo from a grayscale or red-free one and from most scenes;
  * contrast: gray standard deviation of the whole frame (a blank frame has none);
  * sharpness: variance of the 4-neighbour Laplacian inside the disc, away from its rim.
Thresholds come from the manifest's "quality" object; missing keys take DEFAULTS. The model-side
check (features far from public fundus photos) is ``edge_client.ood``.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from edge_client.errors import PhotoQualityError
from edge_client.preprocess import PreprocessConfig, fundus_box

__all__ = ["DEFAULTS", "REASONS", "ANALYSIS_SIZE", "QualityReport", "measure", "check_quality", "verdict"]

ANALYSIS_SIZE = 224
DEFAULTS = {"min_fundus_fraction": 0.6, "min_brightness": 20.0, "max_brightness": 235.0,
            "min_sharpness": 5.0, "max_outside_fraction": 0.35, "min_contrast": 4.0,
            "min_chroma": 0.15, "min_red_share": 0.40, "min_warm_fraction": 0.75,
            "max_burnt_fraction": 0.25}
# Every reason a refusal can carry (the image gate's, then edge_client.ood's and the clinic rule's).
REASONS = ("blank", "too_dark", "grayscale", "red_free", "not_fundus", "no_fundus", "too_bright",
           "blurry", "out_of_distribution", "ungradable")
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass
class QualityReport:
    fundus_fraction: float
    outside_fraction: float
    brightness: float
    sharpness: float
    contrast: float = 0.0
    chroma: float = 0.0
    red_share: float = 0.0
    green_share: float = 0.0
    warm_fraction: float = 0.0
    burnt_fraction: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


@functools.lru_cache(maxsize=8)
def _masks(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disc, corner and inner-disc masks of an s x s square (cached: the same every photo)."""
    yy, xx = np.mgrid[0:s, 0:s]
    r = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) / (s / 2)
    return r <= 0.95, r >= 1.08, r <= 0.8


def _crop(rgb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The fundus square at ANALYSIS_SIZE (or less) and the mask of its pixels that lie in the photo."""
    if min(rgb.shape[:2]) >= 4 * ANALYSIS_SIZE:  # a large photo: box-filter it down first (fast)
        rgb = np.asarray(Image.fromarray(rgb).reduce(min(rgb.shape[:2]) // (2 * ANALYSIS_SIZE)))
    y0, x0, side = fundus_box(rgb, threshold)
    h, w = rgb.shape[:2]
    square = np.zeros((side, side, 3), np.uint8)
    inside = np.zeros((side, side), np.uint8)
    sy0, sy1, sx0, sx1 = max(y0, 0), min(y0 + side, h), max(x0, 0), min(x0 + side, w)
    square[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    inside[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = 255
    s = min(ANALYSIS_SIZE, side)
    img = np.asarray(Image.fromarray(square).resize((s, s), Image.BILINEAR), dtype=np.float32)
    valid = np.asarray(Image.fromarray(inside).resize((s, s), Image.NEAREST)) > 127
    return img, valid


def measure(rgb: np.ndarray, cfg: PreprocessConfig) -> QualityReport:
    """Measure one photo.

    Args:
        rgb: (H, W, 3) uint8 photo. cfg: the manifest's preprocessing (its crop threshold).

    Returns:
        The QualityReport (see the module docstring). With no photo pixel in the corners (a
        strip-shaped photo), outside_fraction is 0: the other measures decide.
    """
    rgb = np.ascontiguousarray(rgb)
    img, valid = _crop(rgb, cfg.crop_threshold)
    step = max(1, min(rgb.shape[:2]) // ANALYSIS_SIZE)  # the whole frame, subsampled
    s = img.shape[0]
    gray = img @ _GRAY
    bright = img.max(axis=2) > cfg.crop_threshold
    disc, corners, inner = _masks(s)
    fundus = bright & disc
    seen_corners = corners & valid
    outside = float(bright[seen_corners].mean()) if seen_corners.sum() >= 0.01 * corners.sum() else 0.0
    brightness = float(gray[fundus].mean()) if fundus.any() else float(gray[disc].mean())
    lap = (gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1])
    region = (inner & bright)[1:-1, 1:-1]
    # Erode the region by one pixel so the fundus border (bright next to black) is not counted.
    region &= np.roll(region, 2, 0) & np.roll(region, -2, 0) & np.roll(region, 2, 1) & np.roll(region, -2, 1)
    sharpness = float(lap[region].var()) if region.sum() > 16 else 0.0
    px = img[fundus] if fundus.sum() > 16 else img[disc & valid]
    total = px.sum(axis=1) + 1e-3
    r, g, b = px[:, 0], px[:, 1], px[:, 2]
    return QualityReport(
        fundus_fraction=float(fundus.sum() / disc.sum()), outside_fraction=outside,
        brightness=brightness, sharpness=sharpness, contrast=float((rgb[::step, ::step].astype(np.float32) @ _GRAY).std()),
        chroma=float((px.max(axis=1) - px.min(axis=1)).mean() / max(float(px.mean()), 1e-3)),
        red_share=float((r / total).mean()), green_share=float((g / total).mean()),
        warm_fraction=float(((r >= g) & (r >= b) & (r > np.minimum(g, b) + 20)).mean()),
        burnt_fraction=float((g >= 245).mean()))


def verdict(m: QualityReport, thresholds: dict | None = None) -> tuple[str, str] | None:
    """The first reason to refuse a measured photo, or None to accept it.

    Args:
        m: the photo's measures. thresholds: the manifest's "quality" (missing keys: DEFAULTS).

    Returns:
        None, or (reason, hint): reason one of REASONS, hint one English line for the user.
    """
    t = {**DEFAULTS, **(thresholds or {})}
    circle = m.fundus_fraction >= t["min_fundus_fraction"] and m.outside_fraction <= t["max_outside_fraction"]
    retina_colours = m.red_share >= t["min_red_share"] and m.warm_fraction >= t["min_warm_fraction"]
    too_bright = ("too_bright", f"photo overexposed (brightness {m.brightness:.0f}, {m.burnt_fraction:.0%} burnt "
                                f"out): lower the flash and retake")
    not_fundus = ("not_fundus", "this is not a colour fundus photo (a person, an object, a document, a screen "
                                "or a chart?): photograph the retina through the fundus lens")
    if m.brightness < t["min_brightness"]:
        return "too_dark", (f"photo too dark (brightness {m.brightness:.0f}, needs {t['min_brightness']:.0f}): "
                            "use the camera's light and retake")
    burnt = m.brightness > t["max_brightness"] or m.burnt_fraction > t["max_burnt_fraction"]
    if burnt and circle:  # a burnt-out fundus has lost its colours: say so before judging them
        return too_bright
    if m.contrast < t["min_contrast"]:
        return "blank", (f"the photo is blank (contrast {m.contrast:.1f}, needs {t['min_contrast']:.0f}): "
                         "check the lens cap and the camera's light, then retake")
    if m.chroma < t["min_chroma"]:
        if not circle:
            return not_fundus
        return "grayscale", ("black-and-white or red-free photo: the model grades colour fundus photos only; "
                             "retake in colour (white light)")
    if not retina_colours:
        if circle and m.green_share > m.red_share:
            return "red_free", ("red-free (green) fundus photo: the model grades colour fundus photos only; "
                                "turn the red-free filter off and retake")
        return not_fundus
    if not circle:
        return "no_fundus", (f"no fundus circle found (disc {m.fundus_fraction:.0%} bright, corners "
                             f"{m.outside_fraction:.0%} bright): photograph the retina through the fundus lens, "
                             "centred, with the black border around it")
    if burnt:
        return too_bright
    if m.sharpness < t["min_sharpness"]:
        return "blurry", (f"photo too blurry (sharpness {m.sharpness:.1f}, needs {t['min_sharpness']:.1f}): "
                          "hold still, focus and retake")
    return None


def check_quality(rgb: np.ndarray, cfg: PreprocessConfig, thresholds: dict | None = None) -> QualityReport:
    """Measure a photo and refuse it when it is not a gradable colour fundus photo.

    Args:
        rgb: (H,W,3) uint8 photo. cfg: preprocessing. thresholds: the manifest's "quality".

    Returns:
        The QualityReport of an accepted photo.

    Raises:
        PhotoQualityError: .reason in {"blank", "too_dark", "grayscale", "red_free", "not_fundus",
        "no_fundus", "too_bright", "blurry"}, a .hint for the user and the .measures.
    """
    m = measure(rgb, cfg)
    refusal = verdict(m, thresholds)
    if refusal is not None:
        raise PhotoQualityError(refusal[0], refusal[1], m.to_dict())
    return m
