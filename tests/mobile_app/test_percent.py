"""Largest-remainder percentages: always sum to 100, never far from the exact share."""
import itertools
import random

import pytest

from mobile_app.percent import largest_remainder_percentages as lrp



def test_known_cases():
    assert lrp([1 / 3, 1 / 3, 1 / 3]) == [34, 33, 33]          # ties go to the earlier grade
    assert lrp([0.237, 0.122, 0.180, 0.266, 0.195]) == [24, 12, 18, 27, 19]
    assert lrp([0.125] * 4 + [0.5]) == [13, 13, 12, 12, 50]       # round() gives 12*4 + 50 = 98
    assert lrp([1.0, 0, 0, 0, 0]) == [100, 0, 0, 0, 0]
    assert lrp([0.2] * 5) == [20] * 5


@pytest.mark.parametrize("seed", range(20))
def test_random_softmax_outputs_sum_to_100_and_stay_within_one(seed):
    rng = random.Random(seed)
    raw = [rng.random() ** 3 for _ in range(5)]
    probs = [r / sum(raw) for r in raw]
    pct = lrp(probs)
    assert sum(pct) == 100
    assert all(abs(p * 100 - q) < 1 for p, q in zip(probs, pct))


def test_order_preserved():
    for probs in itertools.permutations([0.5, 0.3, 0.2]):
        pct = lrp(probs)
        assert sorted(range(3), key=lambda i: probs[i]) == sorted(range(3), key=lambda i: (pct[i], probs[i]))


@pytest.mark.parametrize("bad", [[], [0, 0], [-0.1, 1.1], [float("nan"), 1]])
def test_bad_input_is_refused(bad):
    with pytest.raises(ValueError, match="largest_remainder_percentages"):
        lrp(bad)
