"""How far one device update may reach, and how the hub averages several (pure numpy).

Two defences against a poisoning device, in order:

1. **A norm bound per update** (``update_norm_bound``), derived from the update's own declared
   DP-SGD constants, each capped by the hub's public limits. The device's change is
   Δ = -lr Σ_t (S_t + Z_t) / B over T steps, with S_t the sum of the sampled patients' clipped
   gradients (each of norm <= C), Z_t ~ N(0, σ²C² I_D) and B the public `batch_divisor` (a
   constant, not q·N: edge_client/head_training.py). A device holds at most N_max patients (the
   hub's public cap), so a step samples |B_t| ~ Bin(N, q) with mean at most M = q·N_max. Then
   ||Σ_t S_t|| <= C Σ_t |B_t|, and Σ_t |B_t| exceeds T·M + k√(T·M) + k² with probability
   <= exp(-k²/2) (Bernstein); ||Σ_t Z_t|| exceeds σC√T (√D + k) with probability <= exp(-k²/2)
   (Gaussian concentration). So, with k = 8, an honest device exceeds

       lr·C·[T·M + k√(T·M) + k² + σ√T (√D + k)] / B

   with probability below 2e-14. Anything above it is not what the device's DP training made.

2. **A robust mean** of the updates that pass. ``norm-clipped`` (the default) clips every update
   to the median of their norms, then averages: with honest updates of similar size it equals
   the plain mean (no extra error on top of the DP noise), and one update can move the result
   by at most median-norm / n, the reach of one honest device, whatever direction it picks.
   ``trimmed`` (per coordinate, drop the largest and smallest) and ``median`` (per coordinate)
   also resist one poisoner but add error from the DP noise itself; tests/hub/test_robust_mean.py
   measures all of them against a poisoning device (docs/HUB.md has the figures).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["HEAD_DIM", "update_norm_bound", "norm_clipped_mean", "trimmed_mean", "coordinate_median",
           "plain_mean", "ROBUST_MEANS", "robust_mean"]

HEAD_DIM = 5 * 512 + 5
TAIL_K = 8.0


def update_norm_bound(*, clipping_norm: float, learning_rate: float, steps: int, noise_multiplier: float,
                      batch_divisor: float, max_expected_batch: float, dim: int = HEAD_DIM,
                      k: float = TAIL_K) -> float:
    """The largest L2 norm an honest device's head change reaches (except with probability < 2e^(-k²/2)).

    Args:
        clipping_norm: C. learning_rate: lr. steps: T. noise_multiplier: σ. batch_divisor: B, the
        public constant each step's noised sum is divided by. max_expected_batch: M = q·N_max, the
        most patients a step samples on average on a device within the hub's cap. dim: number of
        parameters. k: tail width.

    Raises:
        ValueError: a non-positive C, lr, steps, B or M, or a negative σ.
    """
    if not (clipping_norm > 0 and learning_rate > 0 and steps >= 1 and batch_divisor > 0
            and max_expected_batch > 0 and noise_multiplier >= 0):
        raise ValueError("clipping_norm, learning_rate, steps, batch_divisor and max_expected_batch must be > 0, "
                         "noise_multiplier >= 0")
    t, m = float(steps), float(max_expected_batch)
    signal = t * m + k * math.sqrt(t * m) + k * k
    noise = noise_multiplier * math.sqrt(t) * (math.sqrt(dim) + k)
    return learning_rate * clipping_norm * (signal + noise) / batch_divisor


def plain_mean(updates: np.ndarray) -> np.ndarray:
    """The arithmetic mean (for comparison only: one update can move it anywhere in its bound)."""
    return np.asarray(updates, np.float64).mean(axis=0)


def norm_clipped_mean(updates: np.ndarray) -> np.ndarray:
    """Clip each update (row) to the median row norm, then average."""
    rows = np.asarray(updates, np.float64)
    norms = np.linalg.norm(rows, axis=1)
    tau = float(np.median(norms))
    scale = np.minimum(1.0, tau / np.maximum(norms, 1e-300))
    return (rows * scale[:, None]).mean(axis=0)


def trimmed_mean(updates: np.ndarray, trim: int = 1) -> np.ndarray:
    """Per coordinate: drop the ``trim`` largest and smallest values, average the rest.

    Raises:
        ValueError: fewer than 2·trim + 1 updates.
    """
    rows = np.sort(np.asarray(updates, np.float64), axis=0)
    if len(rows) < 2 * trim + 1:
        raise ValueError(f"a trimmed mean dropping {trim} on each side needs at least {2 * trim + 1} updates")
    return rows[trim:len(rows) - trim].mean(axis=0)


def coordinate_median(updates: np.ndarray) -> np.ndarray:
    """Per-coordinate median."""
    return np.median(np.asarray(updates, np.float64), axis=0)


ROBUST_MEANS = {"norm-clipped": norm_clipped_mean, "trimmed": trimmed_mean, "median": coordinate_median}


def robust_mean(updates: np.ndarray, method: str = "norm-clipped") -> np.ndarray:
    """Aggregate rows of ``updates`` with one of ROBUST_MEANS.

    Raises:
        ValueError: an unknown method (names the allowed ones) or no updates.
    """
    if method not in ROBUST_MEANS:
        raise ValueError(f"robust mean must be one of {sorted(ROBUST_MEANS)}, got {method!r}")
    if len(updates) == 0:
        raise ValueError("no updates to aggregate")
    return ROBUST_MEANS[method](updates)
