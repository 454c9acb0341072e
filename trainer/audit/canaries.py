"""Gradient canaries: patients whose gradient the auditor chooses (white-box auditing).

Canary i is a patient whose gradient is `norm · e_j(i)`, a "Dirac" vector on one coordinate j(i)
of the model's flat parameters (distinct per canary). Each canary is a real row of a hospital's
data (a sentinel image), so it reaches training through the mode's own sampling: Poisson
sampling in the DP modes, shuffled minibatches in `central` and `fedavg`. Where its gradient
enters depends on the mode:

* DP modes: `CanaryClipper` wraps the mode's `PerSampleClipper`; the real patients go through it
  unchanged and each sampled canary adds its gradient clipped to C (the accountant's sensitivity).
  Everything after the clipped sum (noise shares, sum, server step, ledger) is the product's code.
* non-private modes: `CanaryGradientHooks` blanks the sentinel rows before the model sees them
  and adds each canary's gradient (scaled as the mean loss scales a patient's) to the parameters'
  gradients in that step's backward pass.

`SumRecorder` wraps the server optimiser and keeps, for every privatised sum S_t it is given,
the canaries' coordinates of S_t: what the Dopamine server (or a hospital's own DP-SGD) releases.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainer.dp.hospital import HospitalData
from trainer.dp.per_sample import ClippedSum

# A canary row's pixels all hold CANARY_BASE + its index: preprocessed photos stay within a few
# units of 0, and float32 holds these integers exactly up to 2**24.
CANARY_BASE = 1.0e6
MAX_CANARIES = 2**24 - int(CANARY_BASE) - 1


@dataclass
class Canaries:
    """m gradient canaries.

    Attributes:
        coordinates: (m,) int64 flat parameter index of each canary's gradient, distinct.
        included: (m,) bool: the canary is in the training data (probability 1/2 each).
        hospital: (m,) int: the hospital that holds it.
        norm: each canary's gradient norm before clipping.
    """

    coordinates: torch.Tensor
    included: np.ndarray
    hospital: np.ndarray
    norm: float

    def __len__(self) -> int:
        return len(self.coordinates)


def draw_canaries(m: int, *, num_params: int, hospitals: int, norm: float,
                  seed: int | None = None) -> Canaries:
    """Distinct random coordinates, inclusion with probability 1/2, hospitals round-robin.

    Args:
        seed: None (default): the auditor's secret draw from OS entropy; an int for a repeatable test.
    Raises:
        ValueError: m outside 1..min(num_params, MAX_CANARIES), or norm <= 0.
    """
    if not 1 <= m <= min(num_params, MAX_CANARIES):
        raise ValueError(f"--canaries must be in 1..{min(num_params, MAX_CANARIES)}, got {m}")
    if not norm > 0:
        raise ValueError(f"canary gradient norm must be > 0, got {norm}")
    rng = np.random.default_rng(seed)
    coordinates = torch.from_numpy(rng.choice(num_params, size=m, replace=False).astype(np.int64))
    order = rng.permutation(m)
    return Canaries(coordinates, rng.random(m) < 0.5, order % hospitals, float(norm))


def with_canaries(hospitals: list[HospitalData], canaries: Canaries) -> list[HospitalData]:
    """Each hospital's data plus its included canaries, as extra one-image patients (label 0)."""
    shape = hospitals[0].images.shape[1:]
    out = []
    for k, data in enumerate(hospitals):
        ids = np.flatnonzero(canaries.included & (canaries.hospital == k))
        if len(ids) == 0:
            out.append(data)
            continue
        codes = torch.tensor(CANARY_BASE + ids, dtype=torch.float32)
        images = codes[:, None, None, None].expand(len(ids), *shape)
        patients = data.num_patients + torch.arange(len(ids), dtype=data.patients.dtype)
        out.append(HospitalData(torch.cat([data.images, images]), torch.cat([data.labels, torch.zeros(len(ids),
                                dtype=data.labels.dtype)]), torch.cat([data.patients, patients])))
    return out


def canary_index(images: torch.Tensor) -> torch.Tensor:
    """(B,) the canary index of each row, -1 for a real photo."""
    if images.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    first = images.reshape(images.shape[0], -1)[:, 0].detach().double().cpu()
    return torch.where(first >= CANARY_BASE - 0.5, (first - CANARY_BASE).round().long(), -1)


class CanaryClipper:
    """A `PerSampleClipper` whose batches may hold canaries: real rows go to `inner`, each canary
    adds clip(norm · e_j) to the sum. Same interface as the clipper (params, clipping_norm, clipped_sum)."""

    def __init__(self, inner, canaries: Canaries) -> None:
        self.inner = inner
        self.canaries = canaries
        self.params = inner.params
        self.clipping_norm = inner.clipping_norm
        self.model = inner.model
        # the clipping rule of trainer.dp.per_sample: factor C / (norm + 1e-6), at most 1
        self.clipped_norm = canaries.norm * min(1.0, self.clipping_norm / (canaries.norm + 1e-6))

    def clipped_sum(self, images: torch.Tensor, labels: torch.Tensor,
                    patient_ids: torch.Tensor | None = None) -> ClippedSum:
        index = canary_index(images)
        real = index < 0
        mask = real.to(images.device)
        result = self.inner.clipped_sum(images[mask], labels[mask.to(labels.device)],
                                        None if patient_ids is None else patient_ids[mask.to(patient_ids.device)])
        present = index[~real]
        if len(present) == 0:
            return result
        total = result.total.clone()
        coordinates = self.canaries.coordinates[present].to(total.device)
        total.index_add_(0, coordinates, torch.full((len(present),), self.clipped_norm, dtype=total.dtype,
                                                    device=total.device))
        return ClippedSum(total, result.num_patients + len(present), result.loss_sum, result.clipped_fraction)


class CanaryGradientHooks:
    """Non-private modes: blank canary rows before the forward pass, add their gradients in backward.

    A batch's loss is the mean over its B rows, so a canary in it adds norm · e_j / B.
    """

    def __init__(self, model: torch.nn.Module, canaries: Canaries) -> None:
        self.canaries = canaries
        self.pending = torch.zeros(0, dtype=torch.int64)
        self.batch = 1
        params = [p for p in model.parameters() if p.requires_grad]
        starts = np.cumsum([0] + [p.numel() for p in params])
        coords = canaries.coordinates.numpy()
        self.owner = np.searchsorted(starts, coords, side="right") - 1     # which parameter
        self.local = torch.from_numpy(coords - starts[self.owner])        # index inside it
        self.handles = [model.register_forward_pre_hook(self._before_forward)]
        self.handles += [p.register_hook(self._adder(i)) for i, p in enumerate(params) if (self.owner == i).any()]

    def _before_forward(self, module, args):
        images = args[0]
        index = canary_index(images)
        present = index >= 0
        self.pending, self.batch = index[present], max(int(images.shape[0]), 1)
        if not present.any():
            return None
        images = images.clone()
        images[present.to(images.device)] = 0.0
        return (images, *args[1:])

    def _adder(self, param_index: int):
        def add(grad: torch.Tensor) -> torch.Tensor:
            mine = self.pending[torch.from_numpy(self.owner[self.pending.numpy()] == param_index)]
            if len(mine) == 0:
                return grad
            flat = grad.reshape(-1).clone()
            flat.index_add_(0, self.local[mine].to(flat.device),
                            torch.full((len(mine),), self.canaries.norm / self.batch, dtype=flat.dtype,
                                       device=flat.device))
            return flat.reshape(grad.shape)
        return add

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class SumRecorder:
    """Wraps a `ServerOptimizer`: records each privatised sum's canary coordinates, then steps.

    `hospital` tags the sums that follow (None: every hospital's shares are in them).
    """

    def __init__(self, inner, coordinates: torch.Tensor) -> None:
        self.inner = inner
        self.coordinates = coordinates
        self.hospital: int | None = None
        self.sums: list[tuple[int | None, np.ndarray]] = []

    def step(self, weights, state, aggregate, *, expected_batch_size):
        picked = aggregate.detach()[self.coordinates.to(aggregate.device)].double().cpu().numpy()
        self.sums.append((self.hospital, picked))
        return self.inner.step(weights, state, aggregate, expected_batch_size=expected_batch_size)

    def __getattr__(self, name):   # name, learning_rate, momentum...: the optimiser's settings
        return getattr(self.inner, name)
