"""The server's step on the privatised sum S: g = S / (q·ΣN_k), then SGD with momentum or Adam.

Both optimisers are post-processing of the noised sum, so neither changes ε. ``sgd`` is the
paper's (torch.optim.SGD's update, dampening 0). ``adam`` uses β1 = momentum: SqueezeNet trained
from scratch stays on the class-prior plateau under SGD in our measurements and leaves it within
a few epochs under Adam (README, "What we measured").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SERVER_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class ServerOptimizer:
    """One run's server optimiser settings (public constants).

    Args:
        name: "sgd" or "adam".
        learning_rate: step size.
        momentum: SGD momentum, or Adam's β1.
        weight_decay: L2 added to the gradient.
    """

    name: str = "sgd"
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.name not in SERVER_OPTIMIZERS:
            raise ValueError(f"server optimizer must be one of {SERVER_OPTIMIZERS}, got {self.name!r}")

    def step(self, weights: torch.Tensor, state: dict, aggregate: torch.Tensor, *,
             expected_batch_size: float) -> tuple[torch.Tensor, dict]:
        """One step from the aggregate S.

        Args:
            weights: flat w_t.
            state: the optimiser's state from the previous step ({} at the start); not modified.
            aggregate: S, the only thing the server learns.
            expected_batch_size: q·ΣN_k from the DECLARED hospital sizes (public), never the
                realised batch size (which would leak and is unknown to the server).
        Returns:
            (w_{t+1}, new state)
        Raises:
            ValueError: a non-positive expected batch size.
        """
        if expected_batch_size <= 0:
            raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
        gradient = aggregate / expected_batch_size
        if self.weight_decay:
            gradient = gradient + self.weight_decay * weights
        if self.name == "sgd":
            buffer = self.momentum * state.get("momentum", torch.zeros_like(weights)) + gradient
            return weights - self.learning_rate * buffer, {"momentum": buffer}
        step = int(state.get("step", 0)) + 1
        first = self.momentum * state.get("m", torch.zeros_like(weights)) + (1 - self.momentum) * gradient
        second = self.beta2 * state.get("v", torch.zeros_like(weights)) + (1 - self.beta2) * gradient * gradient
        corrected_first = first / (1 - self.momentum ** step)
        corrected_second = second / (1 - self.beta2 ** step)
        weights = weights - self.learning_rate * corrected_first / (corrected_second.sqrt() + self.eps)
        return weights, {"m": first, "v": second, "step": step}


def clone_state(state: dict) -> dict:
    """A deep copy of an optimiser state (tensors cloned), for checkpoints."""
    return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in state.items()}
