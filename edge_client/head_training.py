"""DP-SGD of the linear head (512 -> 5) on the device, in numpy.

The head is ``logits = W f + b`` on the installed model's pooled ``features`` output, so a
per-sample gradient has a closed form: with p = softmax(W f + b) and y the one-hot label,
``dL/dW = (p - y) f^T`` and ``dL/db = p - y`` (softmax cross-entropy). Each step, as named
stages (Opacus' DPOptimizer.pre_step): Poisson-sample patients with rate q, sum each sampled
patient's per-photo gradients, clip that sum to norm C, add N(0, (σC)^2 I), divide by
``batch_divisor`` (a public constant: neither the realised batch size nor the number of patients
shapes the update's scale, so its noise level does not tell how many patients the device holds),
SGD.

Randomness: ``train_head`` has no default ``rng``: callers pass ``CryptoRandom`` (the OS CSPRNG),
as ``training.run_round`` does unless a test gives a seed; ``SeededRandom`` is for tests only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["HeadParams", "DPConfig", "CryptoRandom", "SeededRandom", "per_sample_grads", "per_patient_clipped",
           "noisy_step_gradient", "train_head", "head_logits", "accuracy"]


@dataclass
class HeadParams:
    """The linear head: W (5, 512) and b (5,), float64 while training."""

    weight: np.ndarray
    bias: np.ndarray

    def copy(self) -> "HeadParams":
        return HeadParams(self.weight.copy(), self.bias.copy())


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD settings of one round (all public constants).

    batch_divisor: each step's noised sum is divided by it (the "expected batch" of DP-SGD, here a
    constant that does not follow the number of patients).
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    clipping_norm: float
    learning_rate: float
    batch_divisor: float

    def __post_init__(self) -> None:
        if not self.noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not self.clipping_norm > 0:
            raise ValueError(f"clipping_norm must be > 0, got {self.clipping_norm}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.batch_divisor > 0:
            raise ValueError(f"batch_divisor must be > 0, got {self.batch_divisor}")


class CryptoRandom:
    """Uniforms and Gaussians from os.urandom (the OS CSPRNG): what a deployment uses."""

    def random(self, n: int) -> np.ndarray:
        """n uniforms in (0, 1), 53-bit resolution."""
        raw = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
        return (raw.astype(np.float64) + 0.5) / float(1 << 53)

    def normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normals by Box-Muller."""
        n = int(np.prod(shape))
        u1, u2 = self.random(n), self.random(n)
        return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)).reshape(shape)


class SeededRandom:
    """A seeded numpy generator with CryptoRandom's interface. For tests only: not private."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def random(self, n: int) -> np.ndarray:
        return self.rng.random(n)

    def normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.standard_normal(shape)


def head_logits(params: HeadParams, features: np.ndarray, base_logits: np.ndarray | None = None) -> np.ndarray:
    """(N, 512) features -> (N, 5) logits: ``base_logits + W f + b``.

    With ``base_logits`` None this is exactly the model's head. On the device ``params`` is the
    head's change and ``base_logits`` the installed model's own logits output: the int8 model's
    head weights are not readable, and its logits already are ``W0 f + b0``.
    """
    z = features @ params.weight.T + params.bias
    return z if base_logits is None else z + base_logits


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def per_sample_grads(params: HeadParams, features: np.ndarray, labels: np.ndarray,
                     base_logits: np.ndarray | None = None) -> np.ndarray:
    """Per-photo gradients of the cross-entropy, flattened as [W (5*512), b (5)].

    Args:
        params: the head (or its change). features: (N, 512). labels: (N,) ints 0-4.
        base_logits: (N, 5) logits added before the softmax (see ``head_logits``).

    Returns:
        (N, 5*512 + 5) float64.
    """
    p = _softmax(head_logits(params, features, base_logits))
    p[np.arange(len(labels)), labels] -= 1.0  # p - onehot
    gw = p[:, :, None] * features[:, None, :]  # (N, 5, 512): (p - y) f^T
    return np.concatenate([gw.reshape(len(labels), -1), p], axis=1)


def per_patient_clipped(grads: np.ndarray, patients: np.ndarray, clipping_norm: float) -> np.ndarray:
    """Sum each patient's photo gradients, then clip each sum to norm <= C.

    Args:
        grads: (N, D) per-photo gradients. patients: (N,) patient index 0..P-1. clipping_norm: C.

    Returns:
        (P, D), one clipped row per patient.
    """
    count = int(patients.max()) + 1 if len(patients) else 0
    sums = np.zeros((count, grads.shape[1]))
    np.add.at(sums, patients, grads)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums * np.minimum(1.0, clipping_norm / np.maximum(norms, 1e-12))


def noisy_step_gradient(clipped: np.ndarray, *, noise_multiplier: float, clipping_norm: float,
                        expected_batch: float, rng) -> np.ndarray:
    """(Σ clipped rows + N(0, (σC)^2 I)) / expected_batch: the privatised gradient of one step.

    ``expected_batch`` is the public divisor (``DPConfig.batch_divisor`` on the device).
    """
    total = clipped.sum(axis=0) if len(clipped) else np.zeros(clipped.shape[1])
    noise = rng.normal((clipped.shape[1],)) * (noise_multiplier * clipping_norm)
    return (total + noise) / expected_batch


def train_head(params: HeadParams, features: np.ndarray, labels: np.ndarray, patients: np.ndarray,
               *, config: DPConfig, rng, base_logits: np.ndarray | None = None,
               progress: Callable[[int, int], None] | None = None) -> HeadParams:
    """Run ``config.steps`` DP-SGD steps on the head; returns the new head (input unchanged).

    Args:
        params: the starting head. features: (N, 512) from the installed model. labels: (N,) 0-4.
        patients: (N,) patient index 0..P-1 (the privacy unit). config: DPConfig (public constants).
        rng: CryptoRandom (deployment) or SeededRandom (tests); required, no default. base_logits: (N, 5) added to
        the head's output (the installed model's logits when ``params`` is a change from zero).
        progress: (step, steps) callback.

    Raises:
        ValueError: mismatched shapes or labels outside 0-4.
    """
    features = np.asarray(features, dtype=np.float64)
    base_logits = None if base_logits is None else np.asarray(base_logits, dtype=np.float64)
    labels, patients = np.asarray(labels, dtype=np.int64), np.asarray(patients, dtype=np.int64)
    if features.ndim != 2 or features.shape[1] != params.weight.shape[1]:
        raise ValueError(f"features must be (N, {params.weight.shape[1]}), got {features.shape}")
    if not len(features) == len(labels) == len(patients) or not len(labels):
        raise ValueError("features, labels and patients must have the same, non-zero length")
    if labels.min() < 0 or labels.max() >= params.weight.shape[0]:
        raise ValueError(f"labels must be in 0..{params.weight.shape[0] - 1}")
    num_patients = int(patients.max()) + 1
    head, shape = params.copy(), params.weight.shape
    for step in range(config.steps):
        chosen = np.flatnonzero(rng.random(num_patients) < config.sample_rate)  # Poisson sampling
        rows = np.isin(patients, chosen)
        remap = np.full(num_patients, -1)
        remap[chosen] = np.arange(len(chosen))
        if rows.any():
            offset = None if base_logits is None else base_logits[rows]
            grads = per_sample_grads(head, features[rows], labels[rows], offset)
            clipped = per_patient_clipped(grads, remap[patients[rows]], config.clipping_norm)
        else:
            clipped = np.zeros((0, shape[0] * shape[1] + shape[0]))  # an empty sample still adds noise
        g = noisy_step_gradient(clipped, noise_multiplier=config.noise_multiplier,
                                clipping_norm=config.clipping_norm, expected_batch=config.batch_divisor, rng=rng)
        head.weight -= config.learning_rate * g[:shape[0] * shape[1]].reshape(shape)
        head.bias -= config.learning_rate * g[shape[0] * shape[1]:]
        if progress:
            progress(step + 1, config.steps)
    return head


def accuracy(params: HeadParams, features: np.ndarray, labels: np.ndarray,
             base_logits: np.ndarray | None = None) -> float:
    """Top-1 accuracy of ``head_logits`` on features."""
    z = head_logits(params, np.asarray(features, np.float64), base_logits)
    return float((z.argmax(1) == np.asarray(labels)).mean())
