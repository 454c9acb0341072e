"""A hospital's local training in `fedavg` and `fl-parallel-dp` (the paper's baselines).

`local_sgd`: minibatch epochs without privacy. `local_dp_sgd`: DP-SGD on the hospital's own data
with the FULL noise σC (no secure aggregation to share it with): each step is a Dopamine round
with this one hospital, so the mechanism is the same code. The simulator's modes and the Flower
ClientApp both call these functions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.dp.dopamine import Augment, dopamine_round, load_flat_weights
from trainer.dp.hospital import HospitalData
from trainer.dp.per_sample import PerSampleClipper
from trainer.dp.server_optimizers import ServerOptimizer
from trainer.privacy import PrivacyLedger


def torch_optimizer(params, settings: ServerOptimizer) -> torch.optim.Optimizer:
    """The torch optimiser with the same update as `settings` (same β1 = momentum for Adam)."""
    if settings.name == "adam":
        return torch.optim.Adam(params, lr=settings.learning_rate, betas=(settings.momentum, settings.beta2),
                                weight_decay=settings.weight_decay)
    return torch.optim.SGD(params, lr=settings.learning_rate, momentum=settings.momentum,
                           weight_decay=settings.weight_decay)


def local_sgd(model: torch.nn.Module, data: HospitalData, *, epochs: int, batch_size: int,
              settings: ServerOptimizer, augment: Augment | None = None,
              generator: torch.Generator | None = None, optimizer: torch.optim.Optimizer | None = None) -> float:
    """Train `model` in place for `epochs` of shuffled minibatches; returns the mean loss.

    Args:
        optimizer: an optimiser that persists across calls (central mode); None: a fresh one from
            `settings` (a federated hospital restarts from the server's weights each round).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer or torch_optimizer(params, settings)
    device = params[0].device
    model.train()
    total, count = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(data.labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            images = data.images[idx]
            if augment is not None:
                images = augment(images, generator)
            loss = F.cross_entropy(model(images.to(device)), data.labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
    return total / max(count, 1)


@dataclass
class LocalResult:
    weights: torch.Tensor
    loss: float
    steps: int


def local_dp_sgd(clipper: PerSampleClipper, weights: torch.Tensor, data: HospitalData, *, sample_rate: float,
                 steps: int, noise_multiplier: float, settings: ServerOptimizer, ledger: PrivacyLedger,
                 noise_generator: torch.Generator | None, augment: Augment | None = None,
                 augment_generator: torch.Generator | None = None) -> LocalResult:
    """`steps` DP-SGD steps from `weights` with noise σC, each recorded in `ledger` as it is taken.

    The expected batch q·N_k is this hospital's own (its N_k is known to it). A fresh optimiser
    state each call, as each round restarts from the server's weights.

    Raises:
        RuntimeError: (from the ledger) a step past the budget; check `ledger.can_take` first.
    """
    state: dict = {}
    loss_sum = 0.0
    share_std = noise_multiplier * clipper.clipping_norm
    for _ in range(steps):
        result = dopamine_round(clipper, weights, state, [data], sample_rate=sample_rate, share_std=share_std,
                                expected_batch_size=sample_rate * data.num_patients, optimizer=settings,
                                noise_generators=[noise_generator], augment=augment,
                                augment_generators=[augment_generator])
        if noise_multiplier > 0:
            ledger.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
        weights, state, loss_sum = result.weights, result.optimizer_state, loss_sum + result.loss
    load_flat_weights(clipper.params, weights)
    return LocalResult(weights, loss_sum / max(steps, 1), steps)
