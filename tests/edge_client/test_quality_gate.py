"""The image side of the photo gate on synthetic photos (plumbing; the real photographs are in
test_gate_real_photos.py): false refusals of fundus photos, acceptances of other images, and the
right reason for each way a fundus photo can be unusable."""
import numpy as np
from tests.helpers.photos import blurred, darkened, fundus_photos, non_fundus_photos

from edge_client.errors import PhotoQualityError
from edge_client.preprocess import PreprocessConfig
from edge_client.quality import REASONS, check_quality

CFG = PreprocessConfig()  # 224 px, as shipped


def _verdicts(images):
    out = []
    for img in images:
        try:
            check_quality(img, CFG)
            out.append("ok")
        except PhotoQualityError as exc:
            assert exc.hint and exc.reason in REASONS and exc.measures
            out.append(exc.reason)
    return out


def test_gate_rates(capsys):
    fundus = _verdicts(fundus_photos(40, size=256, seed=3) + fundus_photos(20, size=64, seed=13))
    others = non_fundus_photos(35, size=256, seed=4)
    other_v = _verdicts([img for _, img in others])
    false_refusal = 1 - fundus.count("ok") / len(fundus)
    acceptance = other_v.count("ok") / len(other_v)
    with capsys.disabled():
        print(f"\nquality gate (synthetic): false refusals {false_refusal:.1%} of {len(fundus)} fundus photos; "
              f"acceptances {acceptance:.1%} of {len(other_v)} non-fundus images "
              f"({sorted(set(k for (k, _), v in zip(others, other_v) if v == 'ok')) or 'none'} accepted)")
    assert false_refusal <= 0.05
    assert acceptance <= 0.05


def _gray(img):
    g = (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def test_degraded_fundus_photos_are_refused_with_the_right_reason():
    base = fundus_photos(10, size=256, seed=5)
    assert _verdicts([darkened(x) for x in base]).count("too_dark") >= 9
    blur = _verdicts([blurred(x, 6) for x in base])
    assert blur.count("ok") == 0 and blur.count("blurry") >= 8
    # flash far too strong: the lit fundus burns out, the unlit border stays black
    over = _verdicts([np.where(x.max(axis=2, keepdims=True) > 10, np.clip(x.astype(int) * 6, 0, 255), x)
                      .astype(np.uint8) for x in base])
    assert over.count("ok") == 0 and over.count("too_bright") >= 8
    washed = _verdicts([np.clip(x.astype(int) * 4 + 120, 0, 255).astype(np.uint8) for x in base])  # border too
    assert washed.count("ok") == 0
    assert _verdicts([np.zeros((200, 300, 3), np.uint8)]) == ["too_dark"]  # lens cap on
    assert _verdicts([np.full((200, 300, 3), v, np.uint8) for v in (128, 255)]) == ["blank", "blank"]
    assert _verdicts([_gray(x) for x in base]) == ["grayscale"] * 10
    # red-free photos: the green channel alone, shown green (some cameras) -> "red_free"
    green = [np.stack([np.zeros_like(x[..., 1]), x[..., 1], np.zeros_like(x[..., 1])], axis=2) for x in base]
    assert _verdicts(green) == ["red_free"] * 10


def test_a_fundus_photo_in_a_wide_sensor_frame_or_cut_top_and_bottom_is_accepted():
    framed = []
    for x in fundus_photos(10, size=200, seed=8):
        wide = np.zeros((200, 356, 3), np.uint8)
        wide[:, 78:278] = x
        framed += [wide, np.ascontiguousarray(x[20:180])]
    assert _verdicts(framed).count("ok") == len(framed)
