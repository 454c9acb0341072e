"""The one preprocessing: decode, refuse bad images, crop to the fundus, resize, normalise."""
from __future__ import annotations

import io
import json
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from edge_client.preprocess import (
    ImageError,
    PreprocessConfig,
    crop_to_fundus,
    load_image,
    preprocess_file,
    preprocess_image,
)
from trainer.data.synth import render_fundus

CFG = PreprocessConfig(image_size=32)


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _fundus(seed: int = 0, size: int = 64) -> np.ndarray:
    return render_fundus(2, size, np.random.default_rng(seed))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_config_round_trip_and_validation():
    cfg = PreprocessConfig(image_size=64, crop_threshold=12)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert PreprocessConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="image_size"):
        PreprocessConfig.from_dict({**d, "image_size": "big"})
    with pytest.raises(ValueError, match="std"):
        PreprocessConfig.from_dict({**d, "std": [0.2, 0.0, 0.2]})
    with pytest.raises(ValueError, match="colour_space"):
        PreprocessConfig.from_dict({**d, "colour_space": "rgb"})


def test_output_shape_dtype_range_and_determinism(tmp_path):
    path = tmp_path / "eye.png"
    path.write_bytes(_png_bytes(Image.fromarray(_fundus())))
    a = preprocess_file(path, CFG)
    b = preprocess_file(path, CFG)
    c = preprocess_image(load_image(path.read_bytes()), CFG)
    assert a.shape == (3, 32, 32) and a.dtype == np.float32
    assert np.array_equal(a, b) and np.array_equal(a, c)
    lo = (0 - np.array(CFG.mean)) / np.array(CFG.std)
    hi = (1 - np.array(CFG.mean)) / np.array(CFG.std)
    assert (a.min(axis=(1, 2)) >= lo - 1e-5).all() and (a.max(axis=(1, 2)) <= hi + 1e-5).all()
    # the dark border maps to the bottom of the range, the fundus well above it
    assert np.allclose(a[:, 0, 0], lo, atol=0.1) and (a[:, 16, 16] > lo + 0.5).any()


@pytest.mark.parametrize("seed", range(6))
def test_crop_finds_the_fundus_on_synthetic_images(seed):
    rgb = _fundus(seed, 96)
    sq = crop_to_fundus(rgb, 10.0)
    side = sq.shape[0]
    assert sq.shape == (side, side, 3) and side >= 60
    gray = sq.mean(axis=2)
    k = max(2, side // 12)
    corners = [gray[:k, :k], gray[:k, -k:], gray[-k:, :k], gray[-k:, -k:]]
    assert max(c.mean() for c in corners) < 12, "corners of the crop should be black border"
    c = side // 2
    assert gray[c - k : c + k, c - k : c + k].mean() > 40, "centre of the crop should be fundus"


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    out = np.zeros((h, w, 3), np.uint8)
    out[inside] = (200, 90, 40)
    return out


def test_crop_keeps_circle_centred_when_cut_at_top_and_bottom():
    sq = crop_to_fundus(_disc(60, 100, 50, 30, 40), 10.0)  # cut at both top and bottom
    side = sq.shape[0]
    assert sq.shape[:2] == (side, side) and 78 <= side <= 81  # the diameter (edge pixels may be trimmed)
    assert sq[:8].max() == 0 and sq[-8:].max() == 0  # padded rows are black
    c = side // 2
    assert sq[c, c].max() > 0 and sq[c, 3].max() > 0  # centre and left edge of the circle


def test_crop_circle_cut_on_one_side_only():
    sq = crop_to_fundus(_disc(60, 100, 50, 20, 30), 10.0)  # cut at the top only
    side = sq.shape[0]
    assert 58 <= side <= 61
    gray = sq.max(axis=2)
    ys, xs = np.nonzero(gray)
    # the visible part sits at the bottom; the circle's centre is the square's centre
    assert ys.max() >= side - 2 and abs(xs.mean() - (side - 1) / 2) < 1.5
    assert gray[0].max() == 0 and gray[side // 2, side // 2] > 0


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    img.paste((0, 200, 0), (20, 0, 40, 20))  # right half green
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif, quality=95)
    out = load_image(buf.getvalue())
    assert out.size == (20, 40) and out.mode == "RGB"
    arr = np.asarray(out).astype(int)
    assert arr[5, 10, 0] > 150 and arr[5, 10, 1] < 80  # clockwise: the left (red) half is now on top
    assert arr[35, 10, 1] > 150 and arr[35, 10, 0] < 80


def test_cmyk_palette_and_rgba_become_rgb(tmp_path):
    base = Image.fromarray(_fundus())
    cmyk = io.BytesIO()
    base.convert("CMYK").save(cmyk, format="JPEG", quality=95)
    for data in (cmyk.getvalue(), _png_bytes(base.convert("P")), _png_bytes(base.convert("RGBA"))):
        out = load_image(data)
        assert out.mode == "RGB" and out.size == base.size
        diff = np.abs(np.asarray(out).astype(int) - np.asarray(base).astype(int)).mean()
        assert diff < 25
    transparent = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    assert np.asarray(load_image(_png_bytes(transparent))).max() == 0  # transparent -> black border


@pytest.mark.parametrize("mode", ["L", "1", "I;16", "LA"])
def test_single_channel_images_are_refused(tmp_path, mode):
    path = tmp_path / f"gray_{mode.replace(';', '')}.png"
    Image.new(mode, (16, 16)).save(path)
    with pytest.raises(ImageError, match=rf"gray_{mode.replace(';', '')}\.png.*single-channel"):
        load_image(path)


def test_huge_header_is_refused_before_decoding(tmp_path, monkeypatch):
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(data)

    def no_open(*args, **kwargs):
        raise AssertionError("Pillow must not be asked to open an image over the cap")

    monkeypatch.setattr(Image, "open", no_open)  # our header check must fire first
    with pytest.raises(ImageError, match=r"bomb\.png.*20000x20000.*over the cap of 40,000,000"):
        load_image(path)
    with pytest.raises(ImageError, match="over the cap"):
        preprocess_file(path, CFG)


def test_pixel_cap_also_applies_to_small_caps():
    data = _png_bytes(Image.fromarray(_fundus()))
    with pytest.raises(ImageError, match="over the cap of 1,000"):
        load_image(data, max_pixels=1000, name="phone.png")


def test_truncated_and_non_image_files_are_refused(tmp_path):
    data = _png_bytes(Image.fromarray(_fundus()))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png.*truncated"):
        load_image(truncated)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    with pytest.raises(ImageError, match=r"notes\.png.*not a readable image"):
        load_image(text)
    with pytest.raises(ImageError, match=r"missing\.png.*not found"):
        load_image(tmp_path / "missing.png")


def test_preprocess_does_not_import_torch():
    import subprocess

    code = "import sys, edge_client.preprocess; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
