"""Where DP randomness comes from: Poisson sampling and Gaussian noise.

By default every draw comes from the operating system's CSPRNG (``os.urandom``): nobody can
regenerate the noise, so the published ε holds. A seeded ``torch.Generator`` is accepted only for
tests and in-process experiments that must reproduce a Flower run exactly; a run that uses one
is marked ``seeded`` in its checkpoint, and export and the hub refuse to publish it as private.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

NOISE_SEED_WARNING = ("a noise seed makes the DP noise and sampling reproducible by anyone who knows it: "
                      "the run carries NO privacy guarantee (tests only)")


def seeded_generator(seed: int | None, stream: int) -> torch.Generator | None:
    """A generator for one party's stream (server = 0, hospital k = k + 1), or None.

    For the NOISE and SAMPLING, None (the CSPRNG) is the only private choice: a seed there is for
    tests only. The same function seeds the non-private streams (augmentation, client selection)
    from the run's experiment seed, which is safe to publish.

    Args:
        seed: None, or the seed of this kind of stream.
        stream: which party draws from it, so that parties never share draws.
    """
    if seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(seed * 1_000_003 + stream)
    return generator


def _csprng_uniform(size: int) -> torch.Tensor:
    """Uniform [0, 1) float64 draws with 53 random bits each, from os.urandom."""
    raw = np.frombuffer(os.urandom(8 * size), dtype=np.uint64) >> np.uint64(11)
    return torch.from_numpy(raw.astype(np.float64) / float(1 << 53))


def csprng_bernoulli(size: int, p: float) -> torch.Tensor:
    """Bernoulli(p) draws from the OS CSPRNG."""
    return _csprng_uniform(size) < p


def csprng_normal(size: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal draws from the OS CSPRNG (Box-Muller on 53-bit uniforms)."""
    n = (size + 1) // 2
    u1 = 1.0 - _csprng_uniform(n)  # (0, 1]: log is finite
    u2 = _csprng_uniform(n)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    z = torch.cat([radius * torch.cos(2 * math.pi * u2), radius * torch.sin(2 * math.pi * u2)])
    return z[:size].to(dtype)


def poisson_sample(num_patients: int, *, sample_rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of this round's Poisson sample: each patient independently with probability q.

    Raises:
        ValueError: a rate outside (0, 1].
    """
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if generator is None:
        return csprng_bernoulli(num_patients, sample_rate).nonzero().flatten()
    return (torch.rand(num_patients, generator=generator) < sample_rate).nonzero().flatten()


def gaussian_noise(size: int, *, std: float, generator: torch.Generator | None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, std² I) of the given size; from the OS CSPRNG when ``generator`` is None."""
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")
    if std == 0:
        return torch.zeros(size, dtype=dtype)
    if generator is None:
        return csprng_normal(size, dtype=dtype) * std
    return torch.randn(size, generator=generator, dtype=torch.float64).to(dtype) * std


def summed_gaussian_noise(size: int, *, std: float, generators: list[torch.Generator | None],
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Σ_k N(0, std² I) over parties k, as a secure sum carries their independent shares.

    Seeded parties each draw their own share, in order, so a Flower run in test mode draws the
    same numbers. From the CSPRNG the K shares are independent Gaussians whose sum is exactly
    N(0, K·std² I): one draw, K times cheaper, the same distribution.
    """
    if all(g is None for g in generators):
        return gaussian_noise(size, std=std * math.sqrt(len(generators)), generator=None, dtype=dtype)
    total = torch.zeros(size, dtype=dtype)
    for generator in generators:
        total += gaussian_noise(size, std=std, generator=generator, dtype=dtype)
    return total
