"""From membership guesses to an empirical lower bound on ε, in one training run.

Steinke, Nasr and Jagielski, "Privacy auditing with one (1) training run" (NeurIPS 2023): m
canaries, each included independently with probability 1/2; the auditor guesses "in" for its r
highest scores and abstains on the rest. If the mechanism is (ε, δ)-DP, the number of correct
guesses is stochastically dominated as their Theorem 5.2 says; `p_value` computes that tail (their
Appendix D), `epsilon_lower_bound` the largest ε the observed count rejects at the confidence.

The auditor tries a few r fixed before seeing any score (`GRID_FRACTIONS` of m), each at level
β / |grid| (Bonferroni), so the maximum over them is itself a bound at confidence 1 - β. Only
"in" guesses: under Poisson sampling a member that was never sampled looks exactly like a
non-member, so the low scores mix both while the high ones are members. The grid is short
because δ enters the p-value as α·δ·2m against β/|grid|: at δ = 1e-5 a long grid or many
canaries lowers the ceiling. The most one run can show at δ = 1e-5, every guess right, is about
ε = 4.6 with 1000 canaries and 6.0 with 10 000: a claim of ε = 8 cannot be refuted this way.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

GRID_FRACTIONS = (0.01, 0.05, 0.2, 0.45)   # 0.45: just under the expected share of members


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[≥ v correct of r guesses] for an (ε, δ)-DP mechanism with m canaries (Steinke et al., App. D).

    Raises:
        ValueError: unless 0 <= v <= r <= m, ε >= 0 and 0 <= δ <= 1.
    """
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and 0 <= delta <= 1, got {epsilon}, {delta}")
    q = 1.0 / (1.0 + math.exp(-epsilon))   # accuracy of ε-DP randomised response
    tail = float(stats.binom.sf(v - 1, r, q))
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    # α = max_i P[v - i <= Binomial(r, q) < v] / i: the δ term's worst case over shifts i = 1..v
    below = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))
    alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(tail + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float, beta: float) -> float:
    """Largest ε (to 1e-6) whose p-value for v of r correct is below β; 0 when none is.

    Args:
        beta: 1 - confidence, e.g. 0.05 for 95 %.
    """
    if not 0 < beta < 1:
        raise ValueError(f"beta must be in (0, 1), got {beta}")
    if r == 0 or p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, high, delta) < beta:
        low, high = high, high * 2
        if high > 1e3:
            return low
    while high - low > 1e-6:
        mid = (low + high) / 2
        low, high = (mid, high) if p_value(m, r, v, mid, delta) < beta else (low, mid)
    return low


def guess_grid(m: int) -> list[int]:
    """The numbers of "in" guesses tried, fixed before any score is seen."""
    return sorted({max(1, round(f * m)) for f in GRID_FRACTIONS})


def audit_bound(scores: np.ndarray, included: np.ndarray, *, delta: float, confidence: float = 0.95) -> dict:
    """The best bound over `guess_grid`, Bonferroni-corrected, with how it was reached.

    Args:
        scores: (m,) higher means "more likely a member".
        included: (m,) bool, the truth (each canary drawn in with probability 1/2).
        delta: δ of the claim being tested.
        confidence: of the returned bound (over the canaries' inclusion and the mechanism's noise).
    Returns:
        {"epsilon_lower", "confidence", "guesses", "correct", "grid"}.
    Raises:
        ValueError: mismatched or empty arrays, or non-finite scores (a diverged run).
    """
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    if scores.shape != included.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"scores and included must be equal-length 1-D arrays, got {scores.shape}, {included.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or inf: the audited run diverged")
    m = len(scores)
    truth = included[np.argsort(-scores, kind="stable")]      # most "in"-looking first
    correct_in_top = np.concatenate([[0], np.cumsum(truth)])
    grid = guess_grid(m)
    beta = (1 - confidence) / len(grid)
    best = {"epsilon_lower": 0.0, "guesses": 0, "correct": 0}
    for guesses in grid:
        correct = int(correct_in_top[guesses])
        # δ only raises the p-value: the δ = 0 bound is an upper bound on this one, and cheap
        if epsilon_lower_bound(m, guesses, correct, delta=0.0, beta=beta) <= best["epsilon_lower"]:
            continue
        bound = epsilon_lower_bound(m, guesses, correct, delta=delta, beta=beta)
        if bound > best["epsilon_lower"]:
            best = {"epsilon_lower": bound, "guesses": guesses, "correct": correct}
    return {**best, "confidence": confidence, "grid": len(grid)}


def roc_points(scores: np.ndarray, included: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of "member if score >= t" over every threshold."""
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    truth = included[order]
    tpr = np.concatenate([[0.0], np.cumsum(truth) / max(truth.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~truth) / max((~truth).sum(), 1)])
    return fpr, tpr
