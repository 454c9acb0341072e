"""The photo-quality gate, measured: false refusals of fundus photos, acceptances of other photos."""
import numpy as np
import pytest
from photos import blurred, darkened, fundus_photos, non_fundus_photos

from edge_client.errors import PhotoQualityError
from edge_client.preprocess import PreprocessConfig
from edge_client.quality import check_quality

pytestmark = pytest.mark.timeout(300)
CFG = PreprocessConfig()  # 224 px, as shipped


def _verdicts(images):
    out = []
    for img in images:
        try:
            check_quality(img, CFG)
            out.append("ok")
        except PhotoQualityError as exc:
            assert exc.hint and exc.reason in {"too_dark", "no_fundus", "too_bright", "blurry"}
            out.append(exc.reason)
    return out


def test_gate_rates(capsys):
    fundus = _verdicts(fundus_photos(60, size=256, seed=3))
    others = non_fundus_photos(35, size=256, seed=4)
    other_v = _verdicts([img for _, img in others])
    false_refusal = 1 - fundus.count("ok") / len(fundus)
    acceptance = other_v.count("ok") / len(other_v)
    with capsys.disabled():
        print(f"\nquality gate: false refusals {false_refusal:.1%} of {len(fundus)} synthetic fundus photos; "
              f"acceptances {acceptance:.1%} of {len(other_v)} non-fundus photos "
              f"({sorted(set(k for (k, _), v in zip(others, other_v) if v == 'ok')) or 'none'} accepted)")
    assert false_refusal <= 0.05
    assert acceptance <= 0.10


def test_degraded_fundus_photos_are_refused_with_the_right_reason():
    base = fundus_photos(10, size=256, seed=5)
    assert _verdicts([darkened(x) for x in base]).count("too_dark") >= 9
    blur = _verdicts([blurred(x, 6) for x in base])
    assert blur.count("ok") == 0 and blur.count("blurry") >= 8
    over = _verdicts([np.clip(x.astype(int) * 4 + 120, 0, 255).astype(np.uint8) for x in base])
    assert over.count("ok") == 0
    black = _verdicts([np.zeros((200, 300, 3), np.uint8)])
    assert black == ["too_dark"]
