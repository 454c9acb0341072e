"""Synthetic fundus photographs with grade-dependent DR lesions (numpy + Pillow only).

Each image: black border, orange-red fundus disc (position/scale jittered, sometimes cut at top
and bottom like real cameras), optic disc, vessel arcades, then lesions whose counts follow a
latent severity `grade + noise`, so neighbouring grades overlap:
  1 microaneurysms; 2 + haemorrhages, hard exudates; 3 + many haemorrhages, cotton-wool spots;
  4 + new vessels and pre-retinal haemorrhage.
Lesions are drawn as masks and blended relative to the local background, and every image gets its
own colour gains, gamma, illumination gradient and noise, so colour histograms alone say little.
Drawn at 2x the requested size and downsampled (antialiasing). Deterministic by seed.

`difficulty` in [0, 1] fades the lesions (microaneurysms, haemorrhages, exudates, cotton-wool
spots) towards the background: their contrast is (1 - 0.8 * difficulty) of the default. The
random draws do not depend on it, so the same seed gives the same patients, grades and lesion
positions at every difficulty, and difficulty 0 (the default) gives today's images bit for bit.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edge_client.fileio import atomic_write

APTOS_COUNTS = (1805, 370, 999, 193, 295)  # APTOS 2019 train.csv grade counts
APTOS_PROBS = tuple(c / sum(APTOS_COUNTS) for c in APTOS_COUNTS)
MARKER = "synth.json"
MAX_FADE = 0.8  # difficulty 1 draws lesions at 20 % of the default contrast


def _noise_field(rng: np.random.Generator, d: int, cells: int) -> np.ndarray:
    """Smooth random field in [-1, 1]-ish, size (d, d): a bicubic upsampled coarse grid."""
    coarse = rng.normal(size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize((d, d), Image.BICUBIC))


class _Frame:
    """Maps fundus coordinates (unit disc, +u towards the optic disc) to canvas pixels."""

    def __init__(self, cx: float, cy: float, radius: float, angle: float, flip: bool) -> None:
        self.cx, self.cy, self.r = cx, cy, radius
        self.c, self.s, self.f = math.cos(angle), math.sin(angle), -1.0 if flip else 1.0

    def px(self, u: float, v: float) -> tuple[float, float]:
        x = self.f * (self.c * u - self.s * v)
        y = self.s * u + self.c * v
        return self.cx + self.r * x, self.cy + self.r * y

    def ellipse(self, draw: ImageDraw.ImageDraw, u: float, v: float, ru: float, rv: float, fill: int) -> None:
        x, y = self.px(u, v)
        a, b = max(ru * self.r, 0.5), max(rv * self.r, 0.5)
        draw.ellipse((x - a, y - b, x + a, y + b), fill=fill)


def _walk(rng, frame, draw, u, v, heading, width, steps, curl, fill, branch_p, depth=0) -> None:
    """A vessel as a random walk with tapering width and occasional branches."""
    step = 0.06
    for _ in range(steps):
        heading += rng.normal(0.0, curl)
        nu, nv = u + step * math.cos(heading), v + step * math.sin(heading)
        if nu * nu + nv * nv > 1.05:
            return
        draw.line([frame.px(u, v), frame.px(nu, nv)], fill=fill, width=max(1, round(width * frame.r)))
        u, v = nu, nv
        width *= 0.96
        if depth < 2 and rng.random() < branch_p:
            side = 1 if rng.random() < 0.5 else -1
            _walk(rng, frame, draw, u, v, heading + side * rng.uniform(0.4, 1.0), width * 0.7,
                  int(steps * 0.5), curl, fill, branch_p, depth + 1)


def _scatter(rng, n, r_max=0.9, centre=(0.0, 0.0), spread=None):
    """n points in the fundus: uniform in the disc, or Gaussian around `centre`."""
    if spread is None:
        rad = r_max * np.sqrt(rng.random(n))
        ang = rng.uniform(0, 2 * math.pi, n)
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    pts = rng.normal(centre, spread, size=(n, 2))
    norm = np.linalg.norm(pts, axis=1, keepdims=True)
    return np.where(norm > r_max, pts / np.maximum(norm, 1e-6) * r_max, pts)


def _check_difficulty(difficulty: float) -> float:
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float)) or not 0 <= difficulty <= 1:
        raise ValueError(f"--difficulty must be a number in [0, 1], got {difficulty!r}")
    return float(difficulty)


def render_fundus(grade: int, size: int, rng: np.random.Generator, *, difficulty: float = 0.0) -> np.ndarray:
    """One synthetic fundus photograph of a DR grade.

    Args:
        grade: 0-4.
        size: output side in pixels.
        rng: the image's own generator (all randomness comes from it).
        difficulty: 0 (default) to 1: how faint the lesions are (module docstring).
    Returns:
        (size, size, 3) uint8 RGB image.
    Raises:
        ValueError: a grade outside 0-4 or a difficulty outside [0, 1].
    """
    if grade not in range(5):
        raise ValueError(f"grade must be 0-4, got {grade}")
    contrast = 1.0 - MAX_FADE * _check_difficulty(difficulty)  # exactly 1.0 at difficulty 0
    d = 2 * size if size <= 512 else size  # supersample, at most 2x
    # Geometry: sometimes a large circle cut at top and bottom, else a jittered full circle.
    if rng.random() < 0.3:
        radius = d * rng.uniform(0.50, 0.56)
        cx, cy = d / 2 + rng.normal(0, 0.01 * d), d / 2
    else:
        radius = d * rng.uniform(0.40, 0.47)
        cx, cy = d / 2 + rng.normal(0, 0.02 * d), d / 2 + rng.normal(0, 0.02 * d)
    frame = _Frame(cx, cy, radius, rng.uniform(-0.3, 0.3), flip=rng.random() < 0.5)

    yy, xx = np.mgrid[0:d, 0:d].astype(np.float32)
    rr2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2
    # Background: orange-red, vignetted, with an illumination gradient and blotchy texture.
    base = np.array([rng.uniform(175, 225), rng.uniform(70, 110), rng.uniform(25, 55)], np.float32)
    shade = 1.0 - rng.uniform(0.25, 0.45) * rr2
    g_ang = rng.uniform(0, 2 * math.pi)
    shade = shade + rng.uniform(0.0, 0.2) * ((xx - cx) * math.cos(g_ang) + (yy - cy) * math.sin(g_ang)) / radius
    shade = shade + 0.06 * _noise_field(rng, d, 6)
    img = shade[..., None] * base
    # Optic disc (bright, yellowish) and a darker macula.
    dv = rng.normal(0, 0.05)
    du = rng.uniform(0.36, 0.46)
    dx, dy = frame.px(du, dv)
    disc_r = radius * rng.uniform(0.08, 0.12)
    disc = np.exp(-(((xx - dx) ** 2 + (yy - dy) ** 2) / (disc_r**2)) ** 2)
    img += disc[..., None] * (np.array([250, 225, 150], np.float32) * rng.uniform(0.8, 1.0) - img)
    mx, my = frame.px(rng.normal(-0.05, 0.03), rng.normal(0, 0.03))
    mac = np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (radius * 0.15) ** 2)
    img *= (1.0 - rng.uniform(0.15, 0.3) * mac)[..., None]

    # Masks, blended relative to the background: dark (vessels, bleeds) and bright (exudates, CWS).
    vessels = Image.new("L", (d, d), 0)
    dark = Image.new("L", (d, d), 0)
    yellow = Image.new("L", (d, d), 0)
    white = Image.new("L", (d, d), 0)
    dv_draw, dk_draw, y_draw, w_draw = (ImageDraw.Draw(m) for m in (vessels, dark, yellow, white))
    for sign in (-1, 1):  # temporal arcades curve around the macula; nasal vessels run away
        _walk(rng, frame, dv_draw, du, dv, math.pi + sign * rng.uniform(0.6, 0.9), rng.uniform(0.025, 0.035),
              16, 0.12, 200, 0.12)
        _walk(rng, frame, dv_draw, du, dv, sign * rng.uniform(0.5, 1.3), rng.uniform(0.02, 0.028),
              8, 0.15, 200, 0.1)

    s = grade + rng.normal(0.0, 0.55)  # latent severity: neighbouring grades overlap
    n_ma = rng.poisson(max(0.0, 3.0 * s - 0.5))
    for u, v in _scatter(rng, n_ma, 0.8, (-0.05, 0.0), 0.35):
        rad = rng.uniform(0.02, 0.032)
        frame.ellipse(dk_draw, u, v, rad, rad, int(rng.uniform(180, 240)))
    n_haem = rng.poisson(max(0.0, 3.0 * (s - 1.2)))
    for u, v in _scatter(rng, n_haem, 0.85):
        ru = rng.uniform(0.035, 0.07)
        frame.ellipse(dk_draw, u, v, ru, ru * rng.uniform(0.5, 1.0), int(rng.uniform(170, 230)))
    n_ex = rng.poisson(max(0.0, 1.0 * (s - 1.0)))
    for cu, cv in _scatter(rng, n_ex, 0.6, (-0.1, 0.0), 0.3):
        for u, v in _scatter(rng, rng.integers(3, 9), 0.9, (cu, cv), 0.05):
            rad = rng.uniform(0.012, 0.025)
            frame.ellipse(y_draw, u, v, rad, rad, int(rng.uniform(170, 240)))
    n_cws = rng.poisson(max(0.0, 1.5 * (s - 2.2)))
    for u, v in _scatter(rng, n_cws, 0.7):
        ru = rng.uniform(0.05, 0.09)
        frame.ellipse(w_draw, u, v, ru, ru * rng.uniform(0.5, 0.9), int(rng.uniform(140, 200)))
    if s > 3.3:  # neovascularisation at the disc or elsewhere: tangled fine vessels
        for _ in range(rng.integers(1, 4)):
            u, v = (du, dv) if rng.random() < 0.6 else tuple(_scatter(rng, 1, 0.7)[0])
            _walk(rng, frame, dv_draw, u, v, rng.uniform(0, 2 * math.pi), 0.012, 12, 0.9, 230, 0.3)
        if rng.random() < 0.4:  # pre-retinal haemorrhage: a large dark boat shape
            u, v = _scatter(rng, 1, 0.6)[0]
            frame.ellipse(dk_draw, u, v, rng.uniform(0.12, 0.2), rng.uniform(0.08, 0.12), 235)

    blur = ImageFilter.GaussianBlur(d / 256)
    m_v = np.asarray(vessels.filter(blur), np.float32) / 255
    m_d = np.asarray(dark.filter(blur), np.float32) / 255
    m_y = np.asarray(yellow.filter(blur), np.float32) / 255
    m_w = np.asarray(white.filter(ImageFilter.GaussianBlur(d / 80)), np.float32) / 255
    img *= (1.0 - 0.45 * m_v)[..., None] * np.array([1.0, 0.8, 0.8], np.float32)[None, None] ** m_v[..., None]
    img *= (1.0 - 0.6 * contrast * m_d)[..., None]
    img += m_y[..., None] * (np.array([235, 205, 90], np.float32) - img) * (0.8 * contrast)
    img += m_w[..., None] * (np.array([230, 220, 200], np.float32) - img) * (0.7 * contrast)

    # Camera: per-image colour gains, gamma, noise; black outside the (antialiased) circle.
    img *= np.array([rng.uniform(0.75, 1.15), rng.uniform(0.7, 1.3), rng.uniform(0.6, 1.4)], np.float32)
    img *= rng.uniform(0.7, 1.2)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.8, 1.25)
    img += rng.normal(0, rng.uniform(2, 6), size=img.shape).astype(np.float32)
    edge = np.clip((1.0 - np.sqrt(rr2)) * radius / 1.5, 0.0, 1.0)
    img = img * edge[..., None] + rng.uniform(0, 4, size=img.shape).astype(np.float32) * (1 - edge[..., None])
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if d != size:
        out = out.resize((size, size), Image.LANCZOS)
    return np.asarray(out)


def sample_id(seed: int, index: int) -> str:
    """APTOS-like 12-hex id, stable for (seed, index)."""
    return hashlib.sha1(f"dopamine-synth:{seed}:{index}".encode()).hexdigest()[:12]


def generate_dataset(out: str | Path, n: int, *, size: int = 64, seed: int = 0,
                     class_probs: tuple[float, ...] = APTOS_PROBS, difficulty: float = 0.0) -> Path:
    """Write `n` synthetic images in the APTOS layout: train.csv + train_images/<id_code>.png.

    Args:
        out: folder to write (created; may hold a previous synthetic set, which is replaced).
        n: number of images (>= 1).
        size: image side in pixels (16-1024).
        seed: same seed -> identical bytes.
        class_probs: probability of each grade 0-4 (default APTOS 2019's imbalance).
        difficulty: 0 (default, today's images) to 1: lesion contrast (module docstring).
    Returns:
        The output folder.
    Raises:
        ValueError: bad n/size/probabilities/difficulty, or `out` is a non-empty folder that is not a synthetic set.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--n must be a positive integer, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 1024:
        raise ValueError(f"--size must be an integer in 16-1024, got {size!r}")
    probs = np.asarray(class_probs, dtype=np.float64)
    if probs.shape != (5,) or (probs < 0).any() or probs.sum() <= 0:
        raise ValueError(f"class_probs must be 5 non-negative numbers, got {class_probs!r}")
    difficulty = _check_difficulty(difficulty)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(f"{out}: folder is not empty and holds no synthetic set; choose an empty --out")
    images = out / "train_images"
    images.mkdir(parents=True, exist_ok=True)
    grades = np.random.default_rng(seed).choice(5, size=n, p=probs / probs.sum())
    rows = []
    for i, grade in enumerate(grades):
        rgb = render_fundus(int(grade), size, np.random.default_rng([seed, i]), difficulty=difficulty)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=6)
        code = sample_id(seed, i)
        atomic_write(images / f"{code}.png", buf.getvalue())
        rows.append((code, int(grade)))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id_code", "diagnosis"])
    writer.writerows(rows)
    atomic_write(out / "train.csv", text.getvalue().encode())
    counts = np.bincount(grades, minlength=5).tolist()
    meta = {"generator": "dopamine-synth", "version": 1, "n": n, "size": size, "seed": seed, "grade_counts": counts}
    if difficulty:  # absent at the default, so a default set's marker keeps today's bytes
        meta["difficulty"] = difficulty
    atomic_write(out / MARKER, (json.dumps(meta, indent=2) + "\n").encode())
    return out
