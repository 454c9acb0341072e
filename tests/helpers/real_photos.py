"""Real photographs for the photo gate, from what scikit-image ships in its wheel (skimage.data).

Nothing is downloaded: only the images inside the installed package are used (the ones
``skimage.data`` would fetch from the network are never asked for). Gray images are given to the
gate as RGB with equal channels, the way a phone camera would store a photo of a gray page, so
the gate itself (not the decoder's single-channel refusal) has to refuse them.

Sources (each a row of benchmarks/bench_gate.py):
  non-fundus: people, objects, documents, calibration targets, graphics/screens, science and
  textures, each photo whole and in 4 seeded crops (other framings of the same real pixels);
  real fundus: skimage's one colour fundus photo (``retina``, 1411 px) in capture variants (left/
  right eye flip, sensor frames, circle cut top and bottom, resolutions, JPEG, exposure, gamma,
  mild blur, saturation); red-free/gray fundus crop: ``microaneurysms`` (must be refused).
"""
from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# (source, skimage.data function or file name, category). Files are read from the package folder.
NON_FUNDUS = [
    ("astronaut", "astronaut", "people"), ("camera", "camera", "people"),
    ("coffee", "coffee", "objects"), ("chelsea (cat)", "chelsea", "objects"), ("rocket", "rocket", "objects"),
    ("motorcycle", "motorcycle_left.png", "objects"), ("coins", "coins", "objects"),
    ("clock", "clock", "objects"), ("horse (silhouette)", "horse", "objects"),
    ("page", "page", "documents"), ("text", "text", "documents"),
    ("checkerboard", "checkerboard", "calibration targets"),
    ("chessboard RGB", "chessboard_RGB.png", "calibration targets"),
    ("colour wheel", "colorwheel", "calibration targets"),
    ("logo", "logo", "graphics/screens"),
    ("hubble deep field", "hubble_deep_field", "science"),
    ("immunohistochemistry", "immunohistochemistry", "science"), ("cell", "cell", "science"),
    ("moon", "moon", "science"), ("shepp-logan phantom", "shepp_logan_phantom", "science"),
    ("brick", "brick", "textures"), ("grass", "grass", "textures"), ("gravel", "gravel", "textures"),
]
CROPS = 4


def to_rgb(a: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3): bool/float scaled, gray repeated, alpha composited on black (as the device does)."""
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255
        a = (a[..., :3].astype(np.float32) * alpha).round().astype(np.uint8)
    return np.ascontiguousarray(a)


def _load(name: str) -> np.ndarray:
    import skimage.data

    if name.endswith(".png"):
        return np.asarray(Image.open(Path(skimage.data.__file__).parent / name).convert("RGBA"))
    return getattr(skimage.data, name)()


def _crops(img: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    out = []
    for _ in range(CROPS):
        f = rng.uniform(0.5, 0.9)
        ch, cw = max(8, int(h * f)), max(8, int(w * f))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(np.ascontiguousarray(img[y:y + ch, x:x + cw]))
    return out


@functools.lru_cache(maxsize=1)
def non_fundus_sources() -> tuple[tuple[str, str, tuple[np.ndarray, ...]], ...]:
    """(source, category, photos): each real photo whole and in CROPS seeded crops, plus LFW faces."""
    import skimage.data

    out = []
    for i, (source, name, category) in enumerate(NON_FUNDUS):
        img = to_rgb(_load(name))
        out.append((source, category, tuple([img, *_crops(img, 1000 + i)])))
    faces = skimage.data.lfw_subset()  # 200 real faces, 25x25 gray, shipped as a .npy in the wheel
    out.append(("LFW faces (25 px)", "people", tuple(to_rgb(f) for f in faces)))
    return tuple(out)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _framed(img: np.ndarray, aspect: float) -> np.ndarray:
    h = img.shape[0]
    frame = np.zeros((h, int(h * aspect), 3), np.uint8)
    left = (frame.shape[1] - h) // 2
    frame[:, left:left + h] = img
    return frame


@functools.lru_cache(maxsize=1)
def retina_variants() -> tuple[tuple[str, np.ndarray], ...]:
    """skimage's real colour fundus photo and capture variants of it (one eye, one camera)."""
    import skimage.data

    r = skimage.data.retina()
    h = r.shape[0]
    pil = Image.fromarray(r)
    out = [("original", r), ("other eye (mirror)", np.ascontiguousarray(r[:, ::-1])),
           ("4:3 sensor frame", _framed(r, 4 / 3)), ("16:9 sensor frame", _framed(r, 16 / 9)),
           ("circle cut top and bottom", np.ascontiguousarray(r[int(h * 0.08):int(h * 0.92)])),
           ("off centre", np.ascontiguousarray(np.pad(r, ((150, 50), (40, 160), (0, 0)))))]
    out += [(f"{s} px", np.asarray(pil.resize((s, s), Image.LANCZOS))) for s in (256, 512, 800)]
    out += [(f"JPEG q{q}", _jpeg(r, q)) for q in (60, 85)]
    out += [(f"exposure x{g}", np.clip(r.astype(np.float32) * g, 0, 255).astype(np.uint8))
            for g in (0.7, 0.85, 1.15, 1.3)]
    out += [(f"gamma {g}", (255 * (r / 255.0) ** g).round().astype(np.uint8)) for g in (0.8, 1.25)]
    out += [("mild blur (1.5 px)", np.asarray(pil.filter(ImageFilter.GaussianBlur(1.5)))),
            ("saturation x0.8", np.asarray(ImageEnhance.Color(pil).enhance(0.8)))]
    return tuple(out)


def red_free_crop() -> np.ndarray:
    """skimage's ``microaneurysms``: a real gray (red-free) 102 px crop of a fundus photo."""
    import skimage.data

    return to_rgb(skimage.data.microaneurysms())
