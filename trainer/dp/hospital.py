"""A hospital's training set in memory, and its Poisson sample of patients for one round.

Only what `trainer.dp.dopamine.hospital_shares` returns ever leaves a hospital; the realised
batch size and the loss stay inside.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.dp.noise import poisson_sample


@dataclass
class HospitalData:
    """A hospital's training set. Patients are the sampling unit (a patient's eyes travel together)."""

    images: torch.Tensor      # (N_images, 3, S, S) float32, preprocessed
    labels: torch.Tensor      # (N_images,) int64
    patients: torch.Tensor    # (N_images,) int64 patient index 0..P-1 within this hospital

    def __post_init__(self) -> None:
        if not (len(self.images) == len(self.labels) == len(self.patients)):
            raise ValueError("images, labels and patients must have the same length")
        self.num_patients = int(self.patients.max()) + 1 if len(self.patients) else 0

    def batch_of_patients(self, patient_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every image of the given patients."""
        mask = torch.isin(self.patients, patient_idx)
        return self.images[mask], self.labels[mask], self.patients[mask]


def sample_batch(data: HospitalData, *, sample_rate: float,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This round's Poisson sample of patients, with all their images (CSPRNG when generator is None)."""
    chosen = poisson_sample(data.num_patients, sample_rate=sample_rate, generator=generator)
    return data.batch_of_patients(chosen)


def pool_hospitals(hospitals: list[HospitalData]) -> HospitalData:
    """One data holder with every hospital's patients (patient indices made disjoint)."""
    patients, start = [], 0
    for h in hospitals:
        patients.append(h.patients + start)
        start += h.num_patients
    return HospitalData(torch.cat([h.images for h in hospitals]), torch.cat([h.labels for h in hospitals]),
                        torch.cat(patients))
