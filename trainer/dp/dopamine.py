"""One Dopamine round, whole (docs/DESIGN.md, "Dopamine, precisely"; Malekzadeh et al. 2021).

    hospital k:  s_k = Σ_{i in its Poisson(q) sample} clip(g_i, C) + N(0, share_std² I)
    server:      S   = Σ_k s_k            (secure aggregation shows it only this sum)
                 w_{t+1} = optimizer(w_t, S / (q·ΣN_k))    (declared sizes: a public constant)

`hospital_shares` is a hospital's part: a Flower hospital calls it with itself alone
(federation/task.py), the simulator with all K hospitals, each clipping its own batch as a node
does (so in test mode a deployment's sum matches the simulator's to the quantization step).
`server_step` is the server's part: the Flower strategy calls it on what SecAgg+ unmasked, the
simulator inside `dopamine_round`. Randomness: every draw is from the OS CSPRNG
unless a test passes seeded generators (trainer/dp/noise.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.nn.utils import vector_to_parameters

from trainer.dp.hospital import HospitalData, sample_batch
from trainer.dp.noise import summed_gaussian_noise
from trainer.dp.per_sample import PerSampleClipper
from trainer.dp.server_optimizers import ServerOptimizer

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def noise_share_std(*, noise_multiplier: float, clipping_norm: float, min_participants: int,
                    colluders: int = 0) -> float:
    """Std of one hospital's Gaussian share, so that the honest shares still sum to σC.

    With shares of std σC/√(K_min − t), any K_min − t honest hospitals together add noise of std
    ≥ σC, even if t colluders subtract their own shares and only K_min hospitals survive (a round
    below K_min is aborted).

    Raises:
        ValueError: parameters that cannot give the guarantee (names them).
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


@dataclass
class Contribution:
    """Σ_k s_k over the hospitals given. Only `total` may leave a hospital."""

    total: torch.Tensor     # flat: the clipped sums plus every noise share
    loss_sum: float         # Σ of per-image losses (stays inside)
    patients: int           # realised sample size (stays inside)


def hospital_shares(clipper: PerSampleClipper, hospitals: Sequence[HospitalData], *, sample_rate: float,
                    share_std: float, noise_generators: Sequence[torch.Generator | None],
                    augment: Augment | None = None,
                    augment_generators: Sequence[torch.Generator | None] | None = None) -> Contribution:
    """Sample, clip and noise for each hospital; returns the sum of their shares.

    The clipper's model must hold w_t. An empty sample still sends its noise share, so the sum
    does not reveal it.

    Args:
        clipper: per-patient clipping of the model at w_t.
        hospitals: one hospital (Flower) or all K (simulator).
        sample_rate: q, public.
        share_std: one hospital's noise std, from `noise_share_std`.
        noise_generators: per hospital, None (OS CSPRNG: every real run) or a test-only generator
            that draws its sample, then its noise, in that order.
        augment: training augmentation; augment_generators: its per-hospital generators.
    """
    if not hospitals:
        raise ValueError("no hospitals")
    if len(noise_generators) != len(hospitals):
        raise ValueError(f"{len(hospitals)} hospitals but {len(noise_generators)} noise generators")
    total, loss_sum, patients = None, 0.0, 0
    for k, (data, generator) in enumerate(zip(hospitals, noise_generators)):
        images, labels, patient_ids = sample_batch(data, sample_rate=sample_rate, generator=generator)
        if augment is not None and len(images):
            images = augment(images, augment_generators[k] if augment_generators else None)
        # One clipping call per hospital, never one batch for all: a batch of another shape sums in
        # another order, and through ReLU and max-pool near-ties a last-bit difference in the
        # forward pass moves whole gradient entries (a deployment then differs from the simulator).
        clipped = clipper.clipped_sum(images, labels, patient_ids)
        total = clipped.total if total is None else total + clipped.total
        loss_sum += clipped.loss_sum
        patients += clipped.num_patients
    noise = summed_gaussian_noise(total.numel(), std=share_std, generators=list(noise_generators),
                                  dtype=total.dtype)
    return Contribution(total + noise.to(total.device), loss_sum, patients)


def server_step(weights: torch.Tensor, optimizer_state: dict, aggregate: torch.Tensor, *,
                optimizer: ServerOptimizer, expected_batch_size: float) -> tuple[torch.Tensor, dict]:
    """The server's part: w_{t+1} from S and the public expected batch size q·ΣN_k."""
    return optimizer.step(weights, optimizer_state, aggregate, expected_batch_size=expected_batch_size)


@dataclass
class RoundResult:
    aggregate: torch.Tensor     # S: what secure aggregation revealed
    loss: float                 # mean loss of the sampled patients (simulator diagnostic only)
    weights: torch.Tensor       # w_{t+1}
    optimizer_state: dict


def load_flat_weights(params: list[torch.nn.Parameter], weights: torch.Tensor) -> None:
    """Copy flat weights into parameters (a copy: training never writes into the caller's tensor)."""
    vector_to_parameters(weights.detach().clone().to(params[0].device), params)


def dopamine_round(clipper: PerSampleClipper, weights: torch.Tensor, optimizer_state: dict,
                   hospitals: Sequence[HospitalData], *, sample_rate: float, share_std: float,
                   expected_batch_size: float, optimizer: ServerOptimizer,
                   noise_generators: Sequence[torch.Generator | None], augment: Augment | None = None,
                   augment_generators: Sequence[torch.Generator | None] | None = None) -> RoundResult:
    """One round as the simulator runs it: every hospital's share, their sum, the server's step."""
    load_flat_weights(clipper.params, weights)
    contribution = hospital_shares(clipper, hospitals, sample_rate=sample_rate, share_std=share_std,
                                   noise_generators=noise_generators, augment=augment,
                                   augment_generators=augment_generators)
    new_weights, new_state = server_step(weights, optimizer_state, contribution.total.to(weights.device),
                                         optimizer=optimizer, expected_batch_size=expected_batch_size)
    return RoundResult(contribution.total, contribution.loss_sum / max(contribution.patients, 1),
                       new_weights, new_state)
