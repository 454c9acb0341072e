"""Percentages for display that add up to exactly 100 (largest-remainder rounding)."""
from __future__ import annotations

import math
from collections.abc import Sequence


def largest_remainder_percentages(probabilities: Sequence[float], total: int = 100) -> list[int]:
    """Round probabilities to whole percentages that sum to exactly `total`.

    Each value gets the floor of its share; the units still missing go, one each, to the values
    with the largest remainders (ties go to the earlier index, so the result is deterministic).

    Args:
        probabilities: non-negative numbers with a positive sum (they are normalised first, so a
            softmax output that sums to 0.9999999 is fine).
        total: what the integers must add up to.

    Returns:
        One non-negative int per probability, summing to `total`.

    Raises:
        ValueError: empty input, a negative, NaN or infinite value, or a zero sum.
    """
    values = [float(p) for p in probabilities]
    if not values:
        raise ValueError("largest_remainder_percentages: no probabilities given")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"largest_remainder_percentages: values must be finite and >= 0, got {values}")
    s = sum(values)
    if s <= 0:
        raise ValueError("largest_remainder_percentages: the probabilities sum to 0")
    shares = [v / s * total for v in values]
    floors = [math.floor(x) for x in shares]
    missing = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    return floors
