"""trainer.metrics against scikit-learn (the independent reference) and hand-made cases."""
import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from trainer.metrics import (confusion_matrix, evaluate, expected_calibration_error,
                             quadratic_weighted_kappa, roc_auc)


def _softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(8))
def test_kappa_matches_sklearn_on_random_grades(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y_true = rng.integers(0, 5, n)
    # Predictions correlated with the truth so kappa is far from 0 as well as near it.
    y_pred = np.clip(y_true + rng.integers(-1 - seed % 3, 2 + seed % 3, n), 0, 4)
    expected = cohen_kappa_score(y_true, y_pred, weights="quadratic", labels=list(range(5)))
    assert quadratic_weighted_kappa(y_true, y_pred, 5) == pytest.approx(expected, abs=1e-12)


def test_kappa_extremes():
    y = np.array([0, 1, 2, 3, 4, 2, 1])
    assert quadratic_weighted_kappa(y, y, 5) == pytest.approx(1.0)
    assert quadratic_weighted_kappa(y, 4 - y, 5) < 0
    # Everyone the same grade on both sides: chance agreement is perfect, kappa undefined.
    same = np.zeros(4, dtype=int)
    assert np.isnan(quadratic_weighted_kappa(same, same, 5))
    assert evaluate(same, np.tile([1.0, 0, 0, 0, 0], (4, 1)))["kappa"] is None


@pytest.mark.parametrize("seed", range(8))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(4, 400))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]  # both classes present
    # Coarse scores (few distinct values) force many ties between positives and negatives.
    scores = np.round(labels * 0.3 + rng.random(n), 1 if seed % 2 else 3)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_edge_cases():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: chance
    assert roc_auc([1, 1, 1], [0.1, 0.2, 0.3]) is None


def test_ece_near_zero_when_calibrated():
    rng = np.random.default_rng(0)
    n = 200_000
    confidence = rng.uniform(0.2, 1.0, n)  # >= 0.2 keeps the top class the argmax for C = 5
    # Draw the label so that P(label == argmax) is exactly the stated confidence.
    predicted = rng.integers(0, 5, n)
    correct = rng.random(n) < confidence
    other = (predicted + rng.integers(1, 5, n)) % 5
    y_true = np.where(correct, predicted, other)
    probs = np.tile(((1 - confidence) / 4)[:, None], (1, 5))
    probs[np.arange(n), predicted] = confidence
    assert expected_calibration_error(y_true, probs) < 0.01


def test_ece_large_when_over_confident():
    rng = np.random.default_rng(1)
    n = 5_000
    y_true = rng.integers(0, 5, n)
    predicted = np.where(rng.random(n) < 0.5, y_true, (y_true + 1) % 5)  # 50 % accurate
    probs = np.full((n, 5), 0.01)
    probs[np.arange(n), predicted] = 0.96                                # but 96 % sure
    ece = evaluate(y_true, probs)["ece"]
    assert ece > 0.2
    assert ece == pytest.approx(0.46, abs=0.03)


def test_referable_sensitivity_specificity_hand_made():
    # Referable = grade >= 2. True: 3 referable (2, 3, 4), 3 not (0, 1, 1).
    y_true = np.array([0, 1, 1, 2, 3, 4])
    y_pred = np.array([0, 2, 1, 1, 3, 2])  # FP on the first 1, FN on the 2 -> TP 2/3, TN 2/3
    probs = np.full((6, 5), 0.05)
    probs[np.arange(6), y_pred] = 0.8
    m = evaluate(y_true, probs)
    assert m["referable_sensitivity"] == pytest.approx(2 / 3)
    assert m["referable_specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["per_class_recall"] == [1.0, 0.5, 0.0, 1.0, 0.0]
    assert m["majority_rate"] == pytest.approx(2 / 6)
    assert m["n"] == 6
    assert m["confusion"][1] == [0, 1, 1, 0, 0]
    assert np.array(m["confusion"]).sum() == 6
    # With referable_grade=3, only grades 3 and 4 count: TP = 1 (3->3), FN = 1 (4->2).
    m3 = evaluate(y_true, probs, referable_grade=3)
    assert m3["referable_sensitivity"] == pytest.approx(0.5)
    assert m3["referable_specificity"] == pytest.approx(1.0)


def test_evaluate_is_json_ready_and_matches_sklearn():
    rng = np.random.default_rng(7)
    y_true = rng.choice([0, 1, 2, 4], 300)  # grade 3 absent
    probs = _softmax(rng.normal(size=(300, 5)) + 2.0 * np.eye(5)[y_true])
    m = evaluate(y_true, probs)
    json.dumps(m, allow_nan=False)  # no NaN anywhere
    assert m["per_class_recall"][3] is None
    assert m["kappa"] == pytest.approx(cohen_kappa_score(y_true, probs.argmax(1), weights="quadratic"))
    assert m["referable_auc"] == pytest.approx(roc_auc_score(y_true >= 2, probs[:, 2:].sum(1)))
    assert set(m) == {"accuracy", "kappa", "per_class_recall", "referable_sensitivity",
                      "referable_specificity", "referable_auc", "ece", "majority_rate", "n",
                      "confusion"}


def test_only_one_referable_class_gives_none():
    y_true = np.array([0, 1, 0])
    probs = np.tile([0.7, 0.2, 0.1, 0.0, 0.0], (3, 1))
    m = evaluate(y_true, probs)
    assert m["referable_auc"] is None and m["referable_sensitivity"] is None
    assert m["referable_specificity"] == 1.0


@pytest.mark.parametrize("y_true, probs, kwargs, name", [
    (np.array([0, 1]), np.array([[0.5, 0.5, 0, 0, 0]]), {}, "y_true"),            # length mismatch
    (np.array([[0, 1]]), np.full((2, 5), 0.2), {}, "y_true"),                      # 2-D labels
    (np.array([0, 5]), np.full((2, 5), 0.2), {}, "y_true"),                        # out of range
    (np.array([0.0, 1.0]), np.full((2, 5), 0.2), {}, "y_true"),                    # float labels
    (np.array([0, 1]), np.full((2, 5), 0.3), {}, "probs"),                         # rows sum 1.5
    (np.array([0, 1]), np.full(5, 0.2), {}, "probs"),                              # 1-D probs
    (np.array([0, 1]), np.array([[1.2, -0.2, 0, 0, 0]] * 2), {}, "probs"),         # negative
    (np.array([0, 1]), np.full((2, 5), 0.2), {"referable_grade": 5}, "referable_grade"),
    (np.array([0, 1]), np.full((2, 5), 0.2), {"ece_bins": 0}, "ece_bins"),
])
def test_bad_inputs_name_the_argument(y_true, probs, kwargs, name):
    with pytest.raises(ValueError, match=name):
        evaluate(y_true, probs, **kwargs)


def test_helpers_validate_their_arguments():
    with pytest.raises(ValueError, match="y_pred"):
        quadratic_weighted_kappa([0, 1], [0, 7], 5)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix([0], [0], 1)
    with pytest.raises(ValueError, match="labels"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores"):
        roc_auc([0, 1], [0.1, float("nan")])
