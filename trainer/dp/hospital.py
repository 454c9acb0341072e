"""One hospital's part of a Dopamine round: sample, clip, noise. Called by the simulator and by
the Flower ClientApp alike, so both run the same mechanism.

Only the returned share leaves the hospital; the realised batch size and loss stay inside.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn.utils import vector_to_parameters

from trainer.dp.mechanism import hospital_share, poisson_sample
from trainer.dp.per_sample import PerSampleClipper


@dataclass
class HospitalData:
    """A hospital's training set in memory. Patients are the sampling unit."""

    images: torch.Tensor      # (N_images, 3, S, S) float32, preprocessed
    labels: torch.Tensor      # (N_images,) int64
    patients: torch.Tensor    # (N_images,) int64 patient index 0..P-1 within this hospital

    def __post_init__(self) -> None:
        if not (len(self.images) == len(self.labels) == len(self.patients)):
            raise ValueError("images, labels and patients must have the same length")
        self.num_patients = int(self.patients.max()) + 1 if len(self.patients) else 0

    def batch_of_patients(self, patient_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every image of the given patients (a patient's eyes travel together)."""
        mask = torch.isin(self.patients, patient_idx)
        return self.images[mask], self.labels[mask], self.patients[mask]


def sample_batch(data: HospitalData, *, sample_rate: float,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This round's Poisson sample of patients, with all their images."""
    chosen = poisson_sample(data.num_patients, sample_rate=sample_rate, generator=generator)
    return data.batch_of_patients(chosen)


def hospital_step(clipper: PerSampleClipper, weights: torch.Tensor, data: HospitalData, *,
                  sample_rate: float, noise_std: float, generator: torch.Generator | None,
                  augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None
                  ) -> torch.Tensor:
    """s_k = Σ_{sampled patients} clip(g) + N(0, noise_std² I), at the server's weights w_t.

    Args:
        clipper: the hospital's per-sample clipper (holds its model).
        weights: flat w_t received from the server.
        data: this hospital's patients.
        sample_rate: q, public.
        noise_std: this hospital's share, from `noise_share_std` (σC/√(K_min − t)).
        generator: None in deployment (OS CSPRNG); seeded only in tests/simulation.
        augment: training augmentation applied to the sampled images.
    Returns:
        The flat share vector, the only thing sent (through secure aggregation).
    """
    vector_to_parameters(weights.to(clipper.params[0].device), clipper.params)
    images, labels, patients = sample_batch(data, sample_rate=sample_rate, generator=generator)
    if augment is not None and len(images):
        images = augment(images, generator)
    clipped = clipper.clipped_sum(images, labels, patients)
    return hospital_share(clipped.total, noise_std=noise_std, generator=generator)
