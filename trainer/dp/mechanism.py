"""The Dopamine mechanism as pure functions: sampling, noise shares, the server step.

One round (docs/DESIGN.md, "Dopamine, precisely"):
  hospital k:  s_k = Σ_{i in Poisson(q) sample} clip(g_i, C) + N(0, share_std² I)
  server:      S = Σ_k s_k (it sees only this sum, through secure aggregation)
               g = S / (q · Σ_k N_k)      a public constant, never the realised batch size
               v = μ v + g;  w = w − lr · v
"""
from __future__ import annotations

import math

import torch


def noise_share_std(*, noise_multiplier: float, clipping_norm: float, min_participants: int,
                    colluders: int = 0) -> float:
    """Std of one hospital's Gaussian share, so that the honest shares still sum to σC.

    With shares of std σC/√(K_min − t), any K_min − t honest hospitals together add noise of std
    ≥ σC, even if t colluders subtract their own shares and fewer than K hospitals survive (a round
    below K_min is aborted). K_min − t must be ≥ 1.

    Raises:
        ValueError: if the parameters cannot give the guarantee.
    """
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    if clipping_norm <= 0:
        raise ValueError(f"clipping_norm must be > 0, got {clipping_norm}")
    if colluders < 0:
        raise ValueError(f"colluders must be >= 0, got {colluders}")
    honest = min_participants - colluders
    if honest < 1:
        raise ValueError(f"min_participants ({min_participants}) must exceed colluders ({colluders}): "
                         "otherwise no honest hospital's noise protects the sum")
    return noise_multiplier * clipping_norm / math.sqrt(honest)


def poisson_sample(num_patients: int, *, sample_rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of the patients in this round's Poisson sample (each independently with rate q).

    ``generator=None`` draws from the OS CSPRNG (deployment); a seeded generator is for tests and
    the simulator only.
    """
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if generator is None:
        return csprng_bernoulli(num_patients, sample_rate).nonzero().flatten()
    mask = torch.rand(num_patients, generator=generator) < sample_rate
    return mask.nonzero().flatten()


def gaussian_noise(size: int, *, std: float, generator: torch.Generator | None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, std² I) of the given size; from the OS CSPRNG when ``generator`` is None."""
    if std == 0:
        return torch.zeros(size, dtype=dtype)
    if generator is None:
        return csprng_normal(size, dtype=dtype) * std
    return torch.randn(size, generator=generator, dtype=torch.float64).to(dtype) * std


def csprng_bernoulli(size: int, p: float) -> torch.Tensor:
    """Bernoulli(p) draws from os.urandom (53-bit uniforms)."""
    return _csprng_uniform(size) < p


def csprng_normal(size: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal draws from os.urandom via Box-Muller on 53-bit uniforms."""
    n = (size + 1) // 2
    u1 = 1.0 - _csprng_uniform(n)  # (0, 1]: log is finite
    u2 = _csprng_uniform(n)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    z = torch.cat([radius * torch.cos(2 * math.pi * u2), radius * torch.sin(2 * math.pi * u2)])
    return z[:size].to(dtype)


def _csprng_uniform(size: int) -> torch.Tensor:
    import numpy as np
    import os
    raw = np.frombuffer(os.urandom(8 * size), dtype=np.uint64) >> np.uint64(11)
    return torch.from_numpy(raw.astype(np.float64) / float(1 << 53))


def summed_noise_shares(size: int, *, share_std: float, generators: list[torch.Generator | None],
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Σ_k N(0, share_std² I) over the hospitals, as the secure sum carries it (simulator only).

    Seeded hospitals each draw their own share, in the order `hospital_step` would, so a Flower run
    in test mode reproduces the sum. With the OS CSPRNG the K shares are independent Gaussians, whose
    sum is exactly N(0, K·share_std² I): one draw, K times cheaper.
    """
    if all(generator is None for generator in generators):
        return gaussian_noise(size, std=share_std * math.sqrt(len(generators)), generator=None, dtype=dtype)
    total = torch.zeros(size, dtype=dtype)
    for generator in generators:
        total += gaussian_noise(size, std=share_std, generator=generator, dtype=dtype)
    return total


def hospital_share(clipped_total: torch.Tensor, *, noise_std: float,
                   generator: torch.Generator | None) -> torch.Tensor:
    """What a hospital sends into secure aggregation: its clipped sum plus its noise share.

    An empty sample still sends its noise share (a zero vector plus noise), so the server cannot
    tell an empty sample from a full one.
    """
    noise = gaussian_noise(clipped_total.numel(), std=noise_std, generator=generator,
                           dtype=clipped_total.dtype)
    return clipped_total + noise.to(clipped_total.device)


def server_step(weights: torch.Tensor, momentum_buffer: torch.Tensor, aggregate: torch.Tensor, *,
                expected_batch_size: float, learning_rate: float, momentum: float,
                weight_decay: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """SGD with momentum on the aggregated noisy sum (torch.optim.SGD's update, dampening 0).

    Args:
        weights: flat current weights w_t.
        momentum_buffer: flat v_{t-1} (zeros at the start).
        aggregate: S = Σ_k s_k, the only thing the server learns.
        expected_batch_size: q · Σ_k N_k from the declared hospital sizes (public).
    Returns:
        (w_{t+1}, v_t)
    """
    if expected_batch_size <= 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    gradient = aggregate / expected_batch_size
    if weight_decay:
        gradient = gradient + weight_decay * weights
    buffer = momentum * momentum_buffer + gradient
    return weights - learning_rate * buffer, buffer


SERVER_OPTIMIZERS = ("sgd", "adam")


def server_update(weights: torch.Tensor, state: dict, aggregate: torch.Tensor, *, optimizer: str,
                  expected_batch_size: float, learning_rate: float, momentum: float,
                  weight_decay: float = 0.0, beta2: float = 0.999, eps: float = 1e-8
                  ) -> tuple[torch.Tensor, dict]:
    """The server's step on the noisy sum, by optimizer name. Both are post-processing of the
    privatised sum, so neither changes ε.

    ``sgd`` is the paper's SGD with momentum (`server_step`). ``adam`` uses β1 = momentum: SqueezeNet
    trained from scratch (no ImageNet weights offline) stays on the class-prior plateau under SGD
    in our measurements, and leaves it within a few epochs under Adam.

    Args:
        state: the optimizer's state from the previous call ({} at the start).
    Returns:
        (new weights, new state)
    """
    if optimizer == "sgd":
        buffer = state.get("momentum", torch.zeros_like(weights))
        weights, buffer = server_step(weights, buffer, aggregate, expected_batch_size=expected_batch_size,
                                      learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)
        return weights, {"momentum": buffer}
    if optimizer != "adam":
        raise ValueError(f"server optimizer must be one of {SERVER_OPTIMIZERS}, got {optimizer!r}")
    if expected_batch_size <= 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    gradient = aggregate / expected_batch_size
    if weight_decay:
        gradient = gradient + weight_decay * weights
    step = int(state.get("step", 0)) + 1
    first = momentum * state.get("m", torch.zeros_like(weights)) + (1 - momentum) * gradient
    second = beta2 * state.get("v", torch.zeros_like(weights)) + (1 - beta2) * gradient * gradient
    corrected_first = first / (1 - momentum ** step)
    corrected_second = second / (1 - beta2 ** step)
    weights = weights - learning_rate * corrected_first / (corrected_second.sqrt() + eps)
    return weights, {"m": first, "v": second, "step": step}
