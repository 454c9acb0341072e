"""What every mode shares: the model, the hospitals, their random generators, resumable state."""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from trainer.config import TrainConfig
from trainer.dp.hospital import HospitalData

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def make_generator(seed: int | None, stream: int) -> torch.Generator | None:
    """A seeded generator per stream (server = 0, hospital k = k + 1); None means OS CSPRNG."""
    if seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(seed * 1_000_003 + stream)
    return generator


def make_torch_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """The non-private modes' optimizer, matching the DP modes' server update (same β1 = momentum)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, betas=(config.momentum, 0.999),
                                weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                           weight_decay=config.weight_decay)


class Mode:
    """Base class. Subclasses implement `run_round` and extend `state_dict` for their own state."""

    name = "base"

    def __init__(self, *, model: torch.nn.Module, hospitals: list[HospitalData], config: TrainConfig,
                 augment: Augment | None = None) -> None:
        if not hospitals or any(h.num_patients == 0 for h in hospitals):
            empty = [k for k, h in enumerate(hospitals) if h.num_patients == 0]
            raise ValueError(f"hospitals {empty} have no patients: use fewer hospitals or more data")
        self.model = model
        self.hospitals = hospitals
        self.config = config
        self.augment = augment if config.augment else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.server_generator = make_generator(config.seed, 0)
        self.hospital_generators = [make_generator(config.seed, k + 1) for k in range(len(hospitals))]

    # -- weights ----------------------------------------------------------------------------
    def weights(self) -> torch.Tensor:
        return parameters_to_vector(self.params).detach().clone()

    def set_weights(self, flat: torch.Tensor) -> None:
        # vector_to_parameters makes the parameters views of its argument: copy, so that training
        # in place never writes into the caller's tensor (FedAvg restarts every hospital from w_t).
        vector_to_parameters(flat.detach().clone(), self.params)

    # -- the round ----------------------------------------------------------------------------
    def run_round(self, round_index: int) -> dict:
        """Train one round (an epoch for central modes). Returns simulator-side diagnostics."""
        raise NotImplementedError

    def can_continue(self) -> bool:
        """False once the next round would exceed the privacy budget."""
        return True

    def privacy(self) -> dict | None:
        """ε so far with δ and accountant (rounded up); None for non-private modes."""
        return None

    # -- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        gens = [self.server_generator, *self.hospital_generators]
        return {"weights": self.weights(),
                "generators": [g.get_state() if g is not None else None for g in gens]}

    def load_state_dict(self, state: dict) -> None:
        self.set_weights(state["weights"])
        gens = [self.server_generator, *self.hospital_generators]
        for generator, saved in zip(gens, state["generators"]):
            if generator is not None and saved is not None:
                generator.set_state(saved)
