"""Test photos: synthetic fundus photos (trainer synth) and non-fundus photos for the quality gate."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from trainer.data.synth import render_fundus


def fundus_photos(n: int, *, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render_fundus(int(i % 5), size, np.random.default_rng(rng.integers(2**32))) for i in range(n)]


def non_fundus_photos(n: int, *, size: int = 256, seed: int = 1) -> list[tuple[str, np.ndarray]]:
    """Noise, flat colours, gradients, stripes (text-like), rectangle scenes, a blank page."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, np.ndarray]] = []
    kinds = ["noise", "flat", "gradient", "stripes", "scene", "page", "disc"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "noise":
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        elif kind == "flat":
            img = np.full((size, size, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        elif kind == "gradient":
            ramp = np.linspace(rng.uniform(0, 80), rng.uniform(150, 255), size)
            img = np.stack([np.tile(ramp, (size, 1)) * g for g in rng.uniform(0.5, 1, 3)], axis=2).astype(np.uint8)
            if i % 2:
                img = img.transpose(1, 0, 2).copy()
        elif kind == "stripes":
            img = np.full((size, size, 3), 235, np.uint8)
            for row in range(10, size - 10, 12):
                length = int(rng.integers(size // 3, size - 20))
                img[row:row + 5, 10:10 + length] = rng.integers(0, 60)
        elif kind == "scene":
            pil = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(30, 200, 3)))
            draw = ImageDraw.Draw(pil)
            for _ in range(6):
                x0, y0 = rng.integers(0, size - 20, 2)
                w, h = rng.integers(20, size // 2, 2)
                draw.rectangle([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            img = np.asarray(pil)
        elif kind == "disc":  # a lamp or a ball: a bright smooth disc on black
            yy, xx = np.mgrid[0:size, 0:size]
            r = np.hypot(yy - size / 2, xx - size / 2) / (0.45 * size)
            shade = np.clip(1.2 - r, 0, 1) * (r <= 1)
            img = (shade[..., None] * rng.uniform(120, 255, 3)).astype(np.uint8)
        else:
            img = np.full((size, size, 3), 250, np.uint8)
            img[size // 3:size // 3 + 4, 20:size - 20] = 30
        out.append((kind, img))
    return out


def blurred(img: np.ndarray, radius: float = 6) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def darkened(img: np.ndarray, factor: float = 0.08) -> np.ndarray:
    return (img.astype(np.float32) * factor).astype(np.uint8)


def png_bytes(img: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()
