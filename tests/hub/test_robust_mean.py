"""One poisoning device against the hub's mean: measured for each robust mean (docs/HUB.md has the table).

Honest updates come from the device's own DP-SGD of the head (edge_client.head_training, the
device's default constants, σ calibrated to ε = 5) on synthetic 512-d features of 5 classes
(plumbing-grade data: it measures how much one update can move the aggregate, not clinical
accuracy). The attacker sends one update at the hub's norm bound for its declared constants,
aimed to make every photo grade 0, or to undo the honest devices' change.
Run with `-s` to print the table.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_client.head_training import DPConfig, HeadParams, SeededRandom, train_head
from edge_client.rdp import calibrate_noise_multiplier
from hub.robust import ROBUST_MEANS, plain_mean, update_norm_bound

CLASSES, DIM, PATIENTS, HONEST = 5, 512, 60, 4
SEPARATION = 0.3


def _features(rng, centres, n):
    labels = rng.integers(0, CLASSES, n)
    return centres[labels] + rng.standard_normal((n, DIM)), labels


def _accuracy(change, feats, labels):
    weight, bias = change[:-CLASSES].reshape(CLASSES, DIM), change[-CLASSES:]
    return float(((feats @ weight.T + bias).argmax(1) == labels).mean())


@pytest.fixture(scope="module")
def honest():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLASSES, DIM)) * SEPARATION
    sigma = calibrate_noise_multiplier(target_epsilon=5.0, sample_rate=0.5, steps=50, delta=1e-5)
    config = DPConfig(noise_multiplier=sigma, sample_rate=0.5, steps=50, clipping_norm=1.0, learning_rate=0.1,
                      batch_divisor=16.0)
    updates = []
    for device in range(HONEST):
        feats, labels = _features(rng, centres, PATIENTS)
        zero = HeadParams(np.zeros((CLASSES, DIM)), np.zeros(CLASSES))
        head = train_head(zero, feats, labels, np.arange(PATIENTS), config=config, rng=SeededRandom(device))
        updates.append(np.concatenate([head.weight.ravel(), head.bias]))
    test = _features(rng, centres, 2000)
    # The hub's bound at its default cap of 10 000 patients per device: the attacker sits at it.
    bound = update_norm_bound(clipping_norm=1.0, learning_rate=0.1, steps=50, noise_multiplier=sigma,
                              batch_divisor=16.0, max_expected_batch=0.5 * 10_000)
    return np.stack(updates), test, bound


def _attacks(updates, bound):
    grade0 = np.zeros(CLASSES * DIM + CLASSES)
    grade0[CLASSES * DIM] = 1.0  # the bias of grade 0
    undo = -plain_mean(updates)
    return {"none": None, "all grade 0": grade0 / np.linalg.norm(grade0) * bound * 0.999,
            "undo the others": undo / np.linalg.norm(undo) * bound * 0.999}


def test_one_poisoner_moves_the_norm_clipped_mean_no_more_than_one_honest_device(honest):
    updates, (feats, labels), bound = honest
    reference = plain_mean(updates)
    base_acc = _accuracy(reference, feats, labels)
    rows = {}
    for attack, poison in _attacks(updates, bound).items():
        stack = updates if poison is None else np.vstack([updates, poison])
        for name, method in {"mean": plain_mean, **ROBUST_MEANS}.items():
            result = method(stack)
            rows[attack, name] = (_accuracy(result, feats, labels),
                                  float(np.linalg.norm(result - reference) / np.linalg.norm(reference)))
    print(f"\nnorm bound {bound:.1f}; honest update norms {np.round(np.linalg.norm(updates, axis=1), 2).tolist()}; "
          f"accuracy of the honest mean {base_acc:.3f} (chance 0.2)")
    print(f"{'attack':<16} " + " ".join(f"{m + ' acc / dist':>24}" for m in ["mean", *ROBUST_MEANS]))
    for attack in ("none", "all grade 0", "undo the others"):
        print(f"{attack:<16} " + " ".join(f"{rows[attack, m][0]:>14.3f} / {rows[attack, m][1]:>6.2f}"
                                          for m in ["mean", *ROBUST_MEANS]))
    one_device = np.median(np.linalg.norm(updates, axis=1)) / (HONEST + 1) / np.linalg.norm(reference)
    assert rows["none", "norm-clipped"][1] < 0.35  # no attack: close to the plain mean
    for attack in ("all grade 0", "undo the others"):
        assert rows[attack, "mean"][0] < base_acc - 0.2  # the plain mean is captured by one device ...
        # ... the norm-clipped mean moves by at most one honest device's reach, and keeps the accuracy
        assert rows[attack, "norm-clipped"][1] <= rows["none", "norm-clipped"][1] + 2 * one_device + 0.05
        assert rows[attack, "norm-clipped"][0] >= base_acc - 0.1
