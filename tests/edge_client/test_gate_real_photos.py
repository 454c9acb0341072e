"""The photo gate on REAL photographs that scikit-image ships in its wheel (nothing downloaded).

A health worker may hand the grader a photo of a person, a cat, a document or a calibration chart:
each must be refused. skimage's one real colour fundus photo, in the ways a camera may deliver it,
must be accepted. Rates per source are printed by benchmarks/bench_gate.py (and in the README).
"""
import pytest
from tests.helpers.real_photos import non_fundus_sources, red_free_crop, retina_variants

from edge_client.preprocess import PreprocessConfig
from edge_client.quality import measure, verdict

CFG = PreprocessConfig(image_size=64)  # the gate measures the photo, not the model's input size


def _reason(img) -> str:
    refusal = verdict(measure(img, CFG))
    return "ok" if refusal is None else refusal[0]


@pytest.mark.parametrize("source, category, photos", non_fundus_sources(), ids=lambda v: v if isinstance(v, str) else "")
def test_real_non_fundus_photos_are_refused(source, category, photos):
    reasons = [_reason(p) for p in photos]
    accepted = reasons.count("ok")
    assert accepted == 0, f"{source} ({category}): {accepted} of {len(photos)} accepted"
    # refused as what they are, never as a fundus photo that is merely blurred or overexposed
    assert set(reasons) <= {"not_fundus", "no_fundus", "grayscale", "blank", "too_dark"}, reasons


def test_real_fundus_photo_is_accepted_in_every_capture_variant():
    reasons = {name: _reason(img) for name, img in retina_variants()}
    assert reasons == {name: "ok" for name in reasons}


def test_real_red_free_fundus_crop_is_refused():
    assert _reason(red_free_crop()) in {"grayscale", "red_free", "not_fundus"}
