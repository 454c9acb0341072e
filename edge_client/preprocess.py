"""The one fundus preprocessing, shared by training and the device (numpy + Pillow, no torch).

decode (EXIF-rotated, RGB) -> crop to the fundus circle (black-padded square) -> resize -> normalise.
Output is NCHW-ready float32 (3, S, S). Its parameters (`PreprocessConfig`) travel in the model
manifest, so a phone preprocesses exactly as the model was trained.
"""
from __future__ import annotations

import io
import math
import struct
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000
_HEAD_BYTES = 131072  # enough for a JPEG SOF after a large EXIF block
# Modes with a single colour band (alpha aside): a grayscale fundus photo is refused, not guessed.
_SINGLE_CHANNEL = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the preprocessing; `to_dict()` goes into the checkpoint and the manifest."""

    image_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_threshold: float = 10.0
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        _check_int("image_size", self.image_size, 8, 4096)
        _check_int("max_pixels", self.max_pixels, 64, 10**10)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
            ):
                raise ValueError(f"PreprocessConfig.{name} must be 3 finite numbers, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if min(self.std) <= 0:
            raise ValueError(f"PreprocessConfig.std must be > 0, got {self.std!r}")
        t = self.crop_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 255:
            raise ValueError(f"PreprocessConfig.crop_threshold must be a number in [0, 255), got {t!r}")
        object.__setattr__(self, "crop_threshold", float(t))

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """Build from a dict (e.g. a manifest's "preprocess"), validating every field.

        Raises:
            ValueError: naming an unknown, missing-typed or out-of-range field.
        """
        if not isinstance(d, dict):
            raise ValueError(f"preprocess config must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown preprocess config field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"PreprocessConfig.{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _header_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG or JPEG header, without Pillow (so our cap fires first)."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                return None
            marker = head[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            seg_len = struct.unpack(">H", head[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
                h, w = struct.unpack(">HH", head[i + 5 : i + 9])
                return w, h
            i += 2 + seg_len
    return None


def _check_pixels(size: tuple[int, int], max_pixels: int, label: str) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageError(f"{label}: image is {w}x{h} = {w * h:,} pixels, over the cap of {max_pixels:,}; "
                         "downscale it first")


def open_image(source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Image.Image:
    """Open an image lazily (header only) after checking the pixel cap; nothing is decoded.

    Returns:
        The lazily opened PIL image (format, mode, size known; pixels not read).
    Raises:
        ImageError: missing file, not an image, or over the pixel cap; the message names the file.
    """
    label = name or ("<bytes>" if isinstance(source, (bytes, bytearray)) else str(source))
    try:
        if isinstance(source, (bytes, bytearray)):
            head, fp = bytes(source[:_HEAD_BYTES]), io.BytesIO(source)
        else:
            # Only the header is read here: checking a whole data set at load time stays cheap.
            with open(source, "rb") as fh:
                head = fh.read(_HEAD_BYTES)
            fp = Path(source)
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read file ({exc.strerror or exc})") from None
    size = _header_size(head)
    if size is not None:
        _check_pixels(size, max_pixels, label)
    try:
        image = Image.open(fp)
    except Image.DecompressionBombError as exc:  # formats we do not sniff ourselves
        raise ImageError(f"{label}: image too large ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error):
        raise ImageError(f"{label}: not a readable image (PNG or JPEG expected)") from None
    _check_pixels(image.size, max_pixels, label)
    if image.mode in _SINGLE_CHANNEL:
        raise ImageError(f"{label}: single-channel ({image.mode}) image; a colour fundus photo is required")
    return image


def load_image(source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Image.Image:
    """Decode an image to RGB, applying its EXIF orientation.

    Args:
        source: a file path or the file's bytes.
        max_pixels: refuse images with more pixels than this, before decoding.
        name: how to name the image in errors (default: the path, or "<bytes>").
    Returns:
        A decoded RGB PIL image.
    Raises:
        ImageError: not an image, truncated, single-channel, or over the pixel cap.
    """
    label = name or ("<bytes>" if isinstance(source, (bytes, bytearray)) else str(source))
    image = open_image(source, max_pixels=max_pixels, name=label)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ImageError(f"{label}: truncated or corrupt image ({exc})") from None
    return _to_rgb(image, label)


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SINGLE_CHANNEL:
        raise ImageError(f"{label}: single-channel ({image.mode}) image; a colour fundus photo is required")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa", "PA"):
        # Transparent pixels become black, like the border of a fundus photo.
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def fundus_box(rgb: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """Where the fundus circle's square lies in the photo (it may reach past the photo's edges).

    The fundus is the region brighter than `threshold` (gray level). When the circle is cut by
    the image edge (cameras often cut top and bottom), the square keeps the full diameter and the
    circle's centre stays at the square's centre.

    Args:
        rgb: (H, W, 3) uint8 image.
        threshold: gray level (0-255) separating the fundus from the dark border.
    Returns:
        (top, left, side): the square's top-left corner in photo pixels (negative when it reaches
        past the photo) and its side, the fundus diameter (the whole photo if no fundus is found).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"crop_to_fundus expects an (H, W, 3) array, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    mask = rgb.max(axis=2) > threshold
    rows, cols = mask.sum(axis=1), mask.sum(axis=0)
    # Ignore rows/columns with only a few bright pixels (noise, text overlays in the border).
    row_idx = np.flatnonzero(rows > max(1, 0.02 * rows.max(initial=0)))
    col_idx = np.flatnonzero(cols > max(1, 0.02 * cols.max(initial=0)))
    if row_idx.size == 0 or col_idx.size == 0:
        top, bottom, left, right = 0, h, 0, w
    else:
        top, bottom, left, right = row_idx[0], row_idx[-1] + 1, col_idx[0], col_idx[-1] + 1
    side = max(bottom - top, right - left)
    cy = _centre(top, bottom, h, side)
    cx = _centre(left, right, w, side)
    return int(round(cy - side / 2)), int(round(cx - side / 2)), int(side)


def crop_to_fundus(rgb: np.ndarray, threshold: float) -> np.ndarray:
    """Crop to the fundus circle (``fundus_box``) and pad to a black square.

    Args:
        rgb: (H, W, 3) uint8 image.
        threshold: gray level (0-255) separating the fundus from the dark border.
    Returns:
        (D, D, 3) uint8, D the fundus diameter (the whole image padded if no fundus is found).
    """
    y0, x0, side = fundus_box(rgb, threshold)
    h, w = rgb.shape[:2]
    out = np.zeros((side, side, 3), dtype=np.uint8)
    sy0, sy1 = max(y0, 0), min(y0 + side, h)
    sx0, sx1 = max(x0, 0), min(x0 + side, w)
    out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out


def _centre(lo: int, hi: int, limit: int, side: int) -> float:
    """Centre of the circle along one axis: a side cut by the image edge is not the circle's edge."""
    if hi - lo >= side:
        return (lo + hi) / 2
    cut_low, cut_high = lo <= 0, hi >= limit
    if cut_low and not cut_high:
        return hi - side / 2
    if cut_high and not cut_low:
        return lo + side / 2
    return (lo + hi) / 2


def preprocess_image(image: Image.Image | np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Crop, resize and normalise one decoded image.

    Args:
        image: an RGB PIL image, or an (H, W, 3) uint8 array.
        cfg: the preprocessing parameters.
    Returns:
        float32 array (3, S, S), normalised with cfg.mean / cfg.std.
    Raises:
        ImageError: a single-channel image.
    """
    if isinstance(image, Image.Image):
        image = _to_rgb(image, "image")
        s = cfg.image_size
        # Large photos: reduce by an integer box filter first (fast, antialiased), still >= 2x the target.
        factor = min(image.size) // (2 * s)
        if factor >= 2:
            image = image.reduce(factor)
        rgb = np.asarray(image, dtype=np.uint8)
    else:
        rgb = np.asarray(image)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ImageError(f"image array must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    square = crop_to_fundus(rgb, cfg.crop_threshold)
    resized = Image.fromarray(square).resize((cfg.image_size, cfg.image_size), Image.BILINEAR)
    x = np.asarray(resized, dtype=np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def preprocess_file(path: str | Path | bytes, cfg: PreprocessConfig) -> np.ndarray:
    """`load_image` + `preprocess_image`: float32 (3, S, S). Raises ImageError naming the file."""
    return preprocess_image(load_image(path, max_pixels=cfg.max_pixels), cfg)
