"""The screening rule on hand-made probability vectors, the model card, and the manifest checks.

The rule must refer whenever enough probability sits on referable grades, whatever the top grade
says; a low-confidence severe grade must not be headlined as a result.
"""
import math

import numpy as np
import pytest

from edge_client.card import ModelCard
from edge_client.manifest import ManifestError, validate_manifest
from edge_client.ood import FeatureStats, check_features
from edge_client.errors import PhotoQualityError
from edge_client.referral import (ReferralRule, calibrated_probabilities, decide, p_referable, percent,
                                  temperature_of)

NAMES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]
DEFAULT = ReferralRule()
CHOSEN = ReferralRule(threshold=0.2, uncertain_upper=0.35, chosen=True)


def test_mass_on_referable_grades_refers_although_the_top_grade_is_no_dr():
    probs = [0.61, 0.0, 0.13, 0.13, 0.13]  # the case: shown as "No referral needed" before
    d = decide(probs, CHOSEN, NAMES)
    assert d.decision == "refer" and d.refer and d.grade == 0
    assert math.isclose(d.p_referable, 0.39)
    assert d.reason == "P(referable) 39 % >= threshold 20 %"
    assert d.advice.startswith("Refer to an eye specialist")
    # with the default band (0.2-0.5) it is still a referral, headlined as uncertain, without a grade
    d = decide(probs, DEFAULT, NAMES)
    assert d.decision == "uncertain_refer" and d.refer
    assert d.advice.startswith("Uncertain: refer") and "No DR" not in d.advice


def test_a_28_percent_proliferative_grade_is_not_the_headline():
    probs = [0.25, 0.25, 0.11, 0.11, 0.28]
    d = decide(probs, DEFAULT, NAMES)
    assert d.grade == 4 and d.decision == "refer" and math.isclose(d.p_referable, 0.5)
    assert d.advice.startswith("Refer to an eye specialist: referable DR")
    assert "most likely grade: Proliferative DR, 28 % (uncertain)" in d.advice


def test_confident_no_dr_is_not_referred_and_low_mass_stays_below_threshold():
    d = decide([0.9, 0.08, 0.01, 0.005, 0.005], DEFAULT, NAMES)
    assert d.decision == "no_referral" and not d.refer
    assert d.reason == "P(referable) 2 % < threshold 20 %"
    assert d.advice.startswith("No referral needed now") and "Screen again" in d.advice


@pytest.mark.parametrize("p_ref, expected", [
    (0.2, "uncertain_refer"), (0.19999, "no_referral"), (0.35, "refer"), (0.34999, "uncertain_refer"),
    (1.0, "refer"), (0.0, "no_referral")])
def test_band_edges(p_ref, expected):
    probs = [1 - p_ref, 0.0, p_ref, 0.0, 0.0]
    assert decide(probs, CHOSEN, NAMES).decision == expected


def test_reason_never_shows_equal_numbers_for_a_strict_comparison():
    d = decide([0.8004, 0.0, 0.1996, 0.0, 0.0], CHOSEN, NAMES)
    assert d.decision == "no_referral" and d.reason == "P(referable) 19.96 % < threshold 20.00 %"
    assert percent(0.39) == "39 %"


def test_refer_at_grade_moves_the_referable_mass():
    probs = [0.1, 0.1, 0.5, 0.2, 0.1]
    assert math.isclose(p_referable(probs, 2), 0.8) and math.isclose(p_referable(probs, 3), 0.3)
    with pytest.raises(ValueError):
        p_referable(probs, 0)


def test_temperature_softens_and_keeps_the_order():
    z = np.array([4.0, 1.0, 0.0, -1.0, -2.0])
    p1, p2 = calibrated_probabilities(z), calibrated_probabilities(z, 2.0)
    assert np.isclose(p2.sum(), 1) and p2.max() < p1.max() and (np.argsort(p1) == np.argsort(p2)).all()
    assert np.allclose(p2, calibrated_probabilities(z / 2.0))


def _manifest(**changes) -> dict:
    m = {"schema_version": 1, "model_version": 7, "created": "2026-11-28T18:00:00Z", "class_names": NAMES,
         "preprocess": {}, "input_size": 32,
         "privacy": {"epsilon": 7.311, "delta": 1e-5, "accountant": "rdp"},
         "artifacts": [{"name": "m.onnx", "sha256": "0" * 64, "size": 1, "runtime": "onnxruntime",
                        "inputs": [{"name": "input"}]}]}
    m.update(changes)
    return m


@pytest.mark.parametrize("referral, field", [
    ({"threshold": 0.6, "uncertain_upper": 0.5}, "uncertain_upper"), ({"refer_at_grade": 0}, "refer_at_grade"),
    ({"threshold": float("nan")}, "threshold"), ({"ungradable_attempts": True}, "ungradable_attempts"),
    ({"threshold": "0.2"}, "threshold")])
def test_manifest_with_a_bad_rule_is_not_trusted(referral, field):
    with pytest.raises(ManifestError, match=field):
        validate_manifest(_manifest(referral=referral))


@pytest.mark.parametrize("calibration", [{"temperature": 0}, {"temperature": -1.0}, {"temperature": float("inf")},
                                         {"method": "temperature"}])
def test_manifest_with_a_bad_temperature_is_not_trusted(calibration):
    with pytest.raises(ManifestError, match="calibration"):
        validate_manifest(_manifest(calibration=calibration))
    assert temperature_of(_manifest()) is None


def test_card_of_an_unvalidated_model_says_so_and_rounds_epsilon_up():
    card = ModelCard.from_manifest(_manifest(referral={"refer_at_grade": 2, "min_confidence": 0.6}))
    assert not card.validated and not card.calibrated and card.threshold == 0.2 and not card.ood_check
    assert card.privacy_text == "ε = 7.32, δ = 1e-05 (RDP)"  # 7.311 shown as 7.32, never 7.31
    text = "\n".join(card.lines())
    assert "NOT VALIDATED" in text and "NOT calibrated" in text and "Screening aid, not a diagnosis" in text
    assert ModelCard.from_dict({**card.to_dict(), "unknown": 1}) == card


def test_card_of_a_validated_calibrated_test_build():
    m = _manifest(referral={"refer_at_grade": 2, "threshold": 0.23, "uncertain_upper": 0.48,
                            "validation": {"validated": True, "sensitivity": 0.91, "specificity": 0.8,
                                           "source": "200 labelled photos in /data (private; outside ε)"}},
                  calibration={"temperature": 1.7, "source": "200 of ... (private)", "data": "private"},
                  privacy={"epsilon": 3.0, "delta": 1e-5, "accountant": "rdp", "seeded": True})
    card = ModelCard.from_manifest(m)
    assert card.validated and card.calibrated and card.temperature == 1.7 and card.test_build
    assert card.calibration_data == "private"
    assert card.privacy_text == "no DP guarantee: test build"  # a seeded build never shows ε as a guarantee
    assert card.lines()[1] == ("Refers on P(grade >= 2); Validated: sensitivity 91 %, specificity 80 % at "
                               "P(referable) >= 23 % (200 labelled photos in /data (private; outside ε))")


def test_feature_distance_flags_far_and_nan_features():
    stats = FeatureStats.from_block({"mean": [0.0] * 4, "scale": [1.0] * 4, "threshold": 2.0})
    assert check_features(np.array([[1.0, -1.0, 1.0, -1.0]]), stats) == pytest.approx(1.0)
    with pytest.raises(PhotoQualityError) as err:
        check_features(np.array([5.0, 5.0, 5.0, 5.0]), stats, {"brightness": 90.0})
    assert err.value.reason == "out_of_distribution" and err.value.measures["feature_distance"] == 5.0
    assert err.value.measures["brightness"] == 90.0 and "trained on" in err.value.hint
    with pytest.raises(PhotoQualityError):
        check_features(np.array([np.nan, 0, 0, 0]), stats)
    assert check_features(np.ones(4), None) is None
    with pytest.raises(ValueError, match="scale"):
        FeatureStats.from_block({"mean": [0.0], "scale": [0.0], "threshold": 1.0})
    with pytest.raises(ManifestError, match="ood"):
        validate_manifest(_manifest(ood={"mean": [0.0], "scale": [1.0, 2.0], "threshold": 1.0}))
