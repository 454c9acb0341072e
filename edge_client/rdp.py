"""RDP accounting of the sampled Gaussian mechanism, in plain math/numpy (no torch, no scipy).

The analysis is Mironov, Talwar and Zhang, "Rényi Differential Privacy of the Sampled Gaussian
Mechanism" (2019): for an integer order α the log of A_α is a finite binomial sum; for a fractional
order it is two infinite series, summed until their terms fall below e^-30. The conversion to
(ε, δ) is the one Opacus' ``get_privacy_spent`` uses (Balle et al. 2020, Prop. 12), over the same
default orders, so ε here agrees with Opacus' RDPAccountant (tests/edge_client/test_rdp.py).

Why our own copy: the device has numpy only (python-for-android ships no scipy or torch).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

__all__ = ["DEFAULT_ORDERS", "compute_rdp", "epsilon_from_rdp", "compute_epsilon", "epsilon_of_history",
           "calibrate_noise_multiplier"]

# Opacus' RDPAccountant.DEFAULT_ALPHAS.
DEFAULT_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


def _log_add(log_x: float, log_y: float) -> float:
    """log(e^x + e^y) without overflow."""
    a, b = min(log_x, log_y), max(log_x, log_y)
    if a == -math.inf:
        return b
    return math.log1p(math.exp(a - b)) + b


def _log_sub(log_x: float, log_y: float) -> float:
    """log(e^x - e^y) for x >= y."""
    if log_x < log_y:
        raise ValueError("the result of a log-subtraction would be negative")
    if log_y == -math.inf:
        return log_x
    if log_x == log_y:
        return -math.inf
    try:
        return math.log(math.expm1(log_x - log_y)) + log_y
    except OverflowError:
        return log_x


def _log_erfc(x: float) -> float:
    """log(erfc(x)); an asymptotic series past x = 25, where erfc underflows."""
    if x < 25.0:
        return math.log(math.erfc(x))
    x2 = x * x
    series = 1.0 - 1.0 / (2 * x2) + 3.0 / (4 * x2 * x2) - 15.0 / (8 * x2 ** 3)
    return -x2 - math.log(x) - 0.5 * math.log(math.pi) + math.log(series)


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """log A_α for an integer order (a finite sum)."""
    log_a = -math.inf
    for i in range(alpha + 1):
        log_coef = math.log(math.comb(alpha, i)) + i * math.log(q) + (alpha - i) * math.log(1 - q)
        log_a = _log_add(log_a, log_coef + (i * i - i) / (2 * sigma ** 2))
    return log_a


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    """log A_α for a fractional order: two alternating series (generalised binomial coefficients)."""
    log_a0, log_a1 = -math.inf, -math.inf
    z0 = sigma ** 2 * math.log(1 / q - 1) + 0.5
    log_coef, sign = 0.0, 1.0  # binom(α, 0) = 1; binom(α, i+1) = binom(α, i) (α - i) / (i + 1)
    i = 0
    while True:
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log(1 - q)
        log_t1 = log_coef + j * math.log(q) + i * math.log(1 - q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma ** 2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma ** 2) + log_e1
        if sign > 0:
            log_a0, log_a1 = _log_add(log_a0, log_s0), _log_add(log_a1, log_s1)
        else:
            log_a0, log_a1 = _log_sub(log_a0, log_s0), _log_sub(log_a1, log_s1)
        if max(log_s0, log_s1) < -30:
            break
        factor = alpha - i
        sign *= 1.0 if factor > 0 else -1.0
        log_coef += math.log(abs(factor)) - math.log(i + 1)
        i += 1
    return _log_add(log_a0, log_a1)


def _rdp_one_step(q: float, sigma: float, alpha: float) -> float:
    if q == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    if q == 1.0:
        return alpha / (2 * sigma ** 2)
    if math.isinf(alpha):
        return math.inf
    log_a = _log_a_int(q, sigma, int(alpha)) if float(alpha).is_integer() else _log_a_frac(q, sigma, alpha)
    return log_a / (alpha - 1)


@lru_cache(maxsize=256)
def _rdp_per_step(q: float, sigma: float, orders: tuple[float, ...]) -> tuple[float, ...]:
    """One step's RDP at each order, cached: a device composes the same few (q, σ) many times
    (one history per patient), and each fractional order sums a series."""
    return tuple(_rdp_one_step(q, sigma, a) for a in orders)


def _check(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if not (isinstance(noise_multiplier, (int, float)) and noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}")
    if not 0 <= sample_rate <= 1:
        raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")


def compute_rdp(*, sample_rate: float, noise_multiplier: float, steps: int,
                orders: Sequence[float] = DEFAULT_ORDERS) -> np.ndarray:
    """RDP of ``steps`` compositions of the sampled Gaussian mechanism, at each order.

    Args:
        sample_rate: Poisson sampling rate q. noise_multiplier: σ (noise std / clipping norm).
        steps: number of compositions. orders: Rényi orders α > 1.

    Returns:
        float array, one RDP value per order.

    Raises:
        ValueError: an argument outside its domain (names it).
    """
    _check(noise_multiplier, sample_rate, steps)
    per_step = _rdp_per_step(float(sample_rate), float(noise_multiplier), tuple(float(a) for a in orders))
    return np.array(per_step, dtype=float) * steps


def epsilon_from_rdp(rdp: np.ndarray, *, delta: float, orders: Sequence[float] = DEFAULT_ORDERS) -> tuple[float, float]:
    """(ε, best order) from RDP values, with Opacus' conversion formula.

    Raises:
        ValueError: δ outside (0, 1) or mismatched lengths.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    orders_vec, rdp_vec = np.atleast_1d(np.asarray(orders, float)), np.atleast_1d(np.asarray(rdp, float))
    if orders_vec.shape != rdp_vec.shape:
        raise ValueError(f"{len(orders_vec)} orders but {len(rdp_vec)} RDP values")
    with np.errstate(invalid="ignore"):
        eps = (rdp_vec - (np.log(delta) + np.log(orders_vec)) / (orders_vec - 1)
               + np.log((orders_vec - 1) / orders_vec))
    if np.isnan(eps).all():
        return math.inf, math.nan
    best = int(np.nanargmin(eps))
    return float(eps[best]), float(orders_vec[best])


def epsilon_of_history(history: Iterable[tuple[float, float, int]], *, delta: float) -> float:
    """ε after composing every (noise_multiplier, sample_rate, steps) entry; 0 for no entry."""
    history = list(history)
    if not history:
        return 0.0
    rdp = sum(compute_rdp(sample_rate=q, noise_multiplier=s, steps=t) for s, q, t in history)
    return epsilon_from_rdp(rdp, delta=delta)[0]


def compute_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of one DP-SGD run (the same number as Opacus' RDPAccountant.get_epsilon)."""
    return epsilon_of_history([(noise_multiplier, sample_rate, steps)], delta=delta)


def calibrate_noise_multiplier(*, target_epsilon: float, sample_rate: float, steps: int, delta: float,
                               history: Iterable[tuple[float, float, int]] = (), tolerance: float = 0.005) -> float:
    """Smallest σ (within ``tolerance``) such that ``history`` plus this run stays <= target ε.

    Raises:
        ValueError: the target is unreachable (e.g. the history alone already exceeds it).
    """
    history = list(history)
    if not target_epsilon > 0:
        raise ValueError(f"target epsilon must be > 0, got {target_epsilon!r}")

    def eps(sigma: float) -> float:
        return epsilon_of_history(history + [(sigma, sample_rate, steps)], delta=delta)

    low, high = 0.0, 1.0
    while eps(high) > target_epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ValueError(f"epsilon {target_epsilon} is unreachable with q={sample_rate}, {steps} steps, "
                             f"delta={delta} (already spent: {epsilon_of_history(history, delta=delta):.3g})")
    while high - low > tolerance * high:
        mid = (low + high) / 2
        if eps(mid) > target_epsilon:
            low = mid
        else:
            high = mid
    return high
