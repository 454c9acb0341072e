"""SecAgg+ arithmetic for Dopamine: the public pre-scale, the quantization step, the δ they cost.

Flower's SecAgg+ clips every coordinate a hospital sends to ±clipping_range (default 8) and
quantizes it stochastically to `quantization_range` levels before masking. Both are per hospital
and non-linear, so the sum the server unmasks equals Σ_k s_k only if nothing was clipped. We make
"any coordinate clipped during the run" an event of probability ≤ η and count it in δ.

Why (1 + e^ε)·η and not η: on the bad event the released sum is a different, non-linear function
of the data, about which the accountant says nothing. For any output set S,
P[M(D) ∈ S] ≤ P[M_ok(D) ∈ S] + η ≤ e^ε·P[M_ok(D') ∈ S] + δ_acc + η
          ≤ e^ε·(P[M(D') ∈ S] + η) + δ_acc + η,
so the mechanism is (ε, δ_acc + (1 + e^ε)·η)-DP. We spend δ_clip = δ/100 on it: η = δ_clip/(1 + e^ε̄)
with ε̄ the most the run may spend (its target, or ε after all its rounds), and the accountant
gets δ − δ_clip. With ε̄ = 8 that is η ≈ δ/298 000.

  |coordinate of s_k| ≤ C·b + t   unless  (Poisson batch > b)  or  (|noise coordinate| > t)
  P(any clip) ≤ R·K·[P(Bin(N_max, q) > b) + d·P(|N(0, σ_share²)| > t)] ≤ η

Each hospital sends x_k = s_k / M with the public scale M = (C·b + t) / clipping_range, and
num_examples = max_weight, so the workflow's weighted mean is the plain mean Σ x_k / n; the
server multiplies back by n·M. Pure functions only: no Flower, no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

CLIP_DELTA_FRACTION = 0.01         # δ_clip = δ/100, subtracted from the accountant's δ
DEFAULT_CLIPPING_RANGE = 8.0        # Flower's SecAggPlusWorkflow defaults
DEFAULT_QUANTIZATION_RANGE = 2**22
DEFAULT_MODULUS_RANGE = 2**32
MAX_WEIGHT = 1000.0                 # every hospital sends num_examples = MAX_WEIGHT (ratio 1)


@dataclass(frozen=True)
class PreScale:
    """The public constants of one run's SecAgg+ encoding."""

    scale: float               # M: a hospital sends s_k / M
    batch_bound: int           # b: bound on one hospital's Poisson batch (patients)
    noise_bound: float         # t: bound on one noise coordinate
    clip_delta: float          # δ_clip = (1 + e^ε̄)·η: what clipping adds to δ (= δ/100)
    clip_probability: float    # η: P(any coordinate clipped during the run) ≤ this
    epsilon_bound: float       # ε̄: the most ε the run may spend (η was sized for it)
    quantization_step: float   # one quantization level, in gradient units (after × M)
    clipping_range: float
    quantization_range: int

    def accountant_delta(self, delta: float) -> float:
        """The δ left for the accountant once δ_clip is counted: δ − δ_clip."""
        return delta - self.clip_delta

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def batch_size_bound(num_patients: int, *, sample_rate: float, tail: float) -> int:
    """Smallest b with P(Binomial(num_patients, sample_rate) > b) ≤ tail.

    Raises:
        ValueError: on an empty hospital, a rate outside (0, 1] or a tail outside (0, 1).
    """
    if num_patients < 1:
        raise ValueError(f"num_patients must be >= 1, got {num_patients}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    from scipy import stats
    bound = int(stats.binom.isf(tail, num_patients, sample_rate))
    while bound < num_patients and stats.binom.sf(bound, num_patients, sample_rate) > tail:
        bound += 1
    return min(max(bound, 0), num_patients)


def gaussian_bound(std: float, *, tail: float) -> float:
    """t with P(|N(0, std²)| > t) ≤ tail (0 when std is 0)."""
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    from scipy import stats
    return 0.0 if std == 0 else float(std * stats.norm.isf(tail / 2))


def prescale(*, clipping_norm: float, noise_share_std: float, max_patients: int, sample_rate: float,
             dimension: int, rounds: int, hospitals: int, delta: float, epsilon_bound: float,
             clipping_range: float = DEFAULT_CLIPPING_RANGE,
             quantization_range: int = DEFAULT_QUANTIZATION_RANGE,
             modulus_range: int = DEFAULT_MODULUS_RANGE) -> PreScale:
    """The public scale M so that no coordinate is clipped during the run, except w.p. ≤ δ/100.

    Args:
        clipping_norm: C, the per-patient clipping norm.
        noise_share_std: one hospital's noise share std (σC/√(K_min − t)).
        max_patients: the largest declared hospital size N_max (public).
        sample_rate: q.
        dimension: d, the number of model parameters.
        rounds: R, the most rounds the run may take.
        hospitals: K, the most hospitals that may send a share in a round.
        delta: the run's total δ; δ_clip = δ/100 of it is spent on clipping.
        epsilon_bound: ε̄, the most ε the run may report (its target, else ε after all rounds);
            η = δ_clip / (1 + e^ε̄).
    Returns:
        The PreScale (scale, bounds, δ_clip, quantization step in gradient units).
    Raises:
        ValueError: on a setting where the sum could overflow the SecAgg+ modulus.
    """
    if hospitals * quantization_range >= modulus_range:
        raise ValueError(f"{hospitals} hospitals x quantization_range {quantization_range} would overflow "
                         f"modulus_range {modulus_range}: lower quantization_range")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not epsilon_bound >= 0:
        raise ValueError(f"epsilon_bound must be >= 0, got {epsilon_bound}")
    clip_delta = delta * CLIP_DELTA_FRACTION
    # exp overflows past ε̄ ≈ 709: η then underflows to 0 and the tails below would be infinite.
    clip_probability = clip_delta / (1 + math.exp(min(epsilon_bound, 700.0)))
    per_share = clip_probability / (2 * rounds * hospitals)   # half for batch sizes, half for noise
    b = batch_size_bound(max_patients, sample_rate=sample_rate, tail=per_share)
    t = gaussian_bound(noise_share_std, tail=per_share / dimension)
    scale = (clipping_norm * max(b, 1) + t) / clipping_range
    step = 2 * clipping_range / quantization_range * scale
    return PreScale(scale=scale, batch_bound=b, noise_bound=t, clip_delta=clip_delta,
                    clip_probability=clip_probability, epsilon_bound=epsilon_bound, quantization_step=step,
                    clipping_range=clipping_range, quantization_range=quantization_range)


def aggregate_error_bound(step: float, participants: int) -> float:
    """Worst-case |Σ_k dequantized − Σ_k exact| per coordinate: stochastic rounding moves each
    hospital's coordinate by less than one step."""
    return participants * step


def quantization_noise_ratio(step: float, participants: int, noise_std: float) -> float:
    """Std of the summed rounding error over the std of the DP noise in the sum (σC).

    Stochastic rounding of a value with fractional part p has variance p(1−p)·step² ≤ step²/4.
    """
    if noise_std <= 0:
        return math.inf
    return math.sqrt(participants) * step / 2 / noise_std
