"""What every mode shares: the model, the hospitals, their random streams, resumable state.

Randomness (docs/DESIGN.md, "Privacy model"): the DP noise and the Poisson sampling come from the
OS CSPRNG unless the config carries a test-only `noise_seed`; the experiment `seed` drives only
what is not private (augmentation, client selection, shuffling), so publishing it costs nothing.
"""
from __future__ import annotations

import torch
from torch.nn.utils import parameters_to_vector

from trainer.config import TrainConfig
from trainer.dp.dopamine import Augment, load_flat_weights
from trainer.dp.hospital import HospitalData
from trainer.dp.noise import seeded_generator
from trainer.dp.server_optimizers import ServerOptimizer


def server_optimizer(config: TrainConfig) -> ServerOptimizer:
    """The run's optimiser settings (the server's, or each hospital's local one)."""
    return ServerOptimizer(config.optimizer, learning_rate=config.learning_rate, momentum=config.momentum,
                           weight_decay=config.weight_decay)


class Mode:
    """Base class. Subclasses implement `run_round` and extend `state_dict` for their own state.

    Args:
        model: the model trained in place.
        hospitals: the simulated hospitals' data.
        config: the run's config.
        augment: training augmentation (used when config.augment).
        priors: privacy histories spent before this run on the same patients (a private warm start).
    """

    name = "base"

    def __init__(self, *, model: torch.nn.Module, hospitals: list[HospitalData], config: TrainConfig,
                 augment: Augment | None = None, priors: list[list] | None = None) -> None:
        if not hospitals or any(h.num_patients == 0 for h in hospitals):
            empty = [k for k, h in enumerate(hospitals) if h.num_patients == 0]
            raise ValueError(f"hospitals {empty} have no patients: use fewer hospitals or more data")
        self.model = model
        self.hospitals = hospitals
        self.config = config
        self.augment = augment if config.augment else None
        self.priors = priors or [[]]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.settings = server_optimizer(config)
        self.server_generator = seeded_generator(config.seed, 0)
        self.augment_generators = [seeded_generator(config.seed, k + 1) for k in range(len(hospitals))]
        self.noise_generators = [seeded_generator(config.noise_seed, k + 1) for k in range(len(hospitals))]

    @property
    def seeded(self) -> bool:
        """True when the DP noise was drawn from a known seed: no privacy guarantee."""
        return self.config.noise_seed is not None

    # -- weights ----------------------------------------------------------------------------
    def weights(self) -> torch.Tensor:
        return parameters_to_vector(self.params).detach().clone()

    def set_weights(self, flat: torch.Tensor) -> None:
        load_flat_weights(self.params, flat)

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

    def histories(self) -> list[list]:
        """The composed privacy histories a checkpoint carries (empty for non-private modes)."""
        return []

    # -- resume -------------------------------------------------------------------------------
    def _generators(self) -> list[torch.Generator | None]:
        return [self.server_generator, *self.augment_generators, *self.noise_generators]

    def state_dict(self) -> dict:
        return {"weights": self.weights(),
                "generators": [g.get_state() if g is not None else None for g in self._generators()]}

    def load_state_dict(self, state: dict) -> None:
        self.set_weights(state["weights"])
        for generator, saved in zip(self._generators(), state["generators"]):
            if generator is not None and saved is not None:
                generator.set_state(saved)
