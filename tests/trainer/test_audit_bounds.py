"""The one-run bound (Steinke, Nasr, Jagielski 2023) on mechanisms whose ε is known exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.audit.bounds import audit_bound, epsilon_lower_bound, guess_grid, p_value, roc_points


def _binomial_tail(r: int, v: int, q: float) -> float:
    return sum(math.comb(r, k) * q**k * (1 - q) ** (r - k) for k in range(v, r + 1))


def test_p_value_is_the_randomised_response_tail_and_delta_only_raises_it():
    for r, v, eps in ((10, 7, 0.5), (50, 45, 2.0), (200, 120, 0.1)):
        q = math.exp(eps) / (1 + math.exp(eps))
        assert p_value(1000, r, v, eps, 0.0) == pytest.approx(_binomial_tail(r, v, q), rel=1e-9)
        assert p_value(1000, r, v, eps, 1e-5) >= p_value(1000, r, v, eps, 0.0)
    with pytest.raises(ValueError, match="correct"):
        p_value(10, 5, 6, 1.0, 0.0)


def test_bound_is_the_largest_epsilon_the_count_rejects():
    m, r, v, beta = 1000, 200, 180, 0.05
    bound = epsilon_lower_bound(m, r, v, delta=1e-5, beta=beta)
    assert p_value(m, r, v, bound, 1e-5) < beta <= p_value(m, r, v, bound + 1e-3, 1e-5)
    assert epsilon_lower_bound(m, r, r // 2, delta=1e-5, beta=beta) == 0.0   # chance-level guesses
    assert epsilon_lower_bound(m, 0, 0, delta=1e-5, beta=beta) == 0.0


def test_the_most_one_run_can_show_at_delta_1e5():
    """Every guess right: about 4.6 with 1000 canaries, 6.0 with 10 000 (docs/EVIDENCE.md)."""
    for m, expected in ((1000, 4.57), (10000, 6.04)):
        included = np.arange(m) % 2 == 0
        assert audit_bound(included.astype(float), included, delta=1e-5)["epsilon_lower"] == pytest.approx(expected, abs=0.01)


def test_randomised_response_is_never_refuted_and_is_detected():
    """Canaries through ε-DP randomised response: the 95 % bound stays below ε in (nearly) every
    trial, and is far from 0 (the audit has power)."""
    rng = np.random.default_rng(17)
    eps, m, trials = 1.0, 2000, 40
    bounds = []
    for _ in range(trials):
        included = rng.random(m) < 0.5
        truthful = rng.random(m) < math.exp(eps) / (1 + math.exp(eps))
        scores = np.where(truthful, included, ~included).astype(float) + rng.random(m) * 1e-3
        bounds.append(audit_bound(scores, included, delta=0.0)["epsilon_lower"])
    assert sum(b > eps for b in bounds) <= 2, bounds          # 5 % allowed; 2 of 40 is p < 0.33
    assert np.mean(bounds) > 0.5, bounds


def test_bad_scores_and_roc_ends():
    included = np.array([True, False, True, False])
    with pytest.raises(ValueError, match="diverged"):
        audit_bound(np.array([1.0, np.nan, 0.0, 0.0]), included, delta=1e-5)
    with pytest.raises(ValueError, match="equal-length"):
        audit_bound(np.zeros(3), included, delta=1e-5)
    fpr, tpr = roc_points(np.array([4.0, 3.0, 2.0, 1.0]), included)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert guess_grid(1000) == [10, 50, 200, 450]
