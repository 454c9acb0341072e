"""`dopamine` (federated DP-SGD: noise split across hospitals, summed under secure aggregation,
momentum at the server) and `central-dp` (the same mechanism with one data holder).

Each round calls `trainer.dp.dopamine.dopamine_round` with every hospital: the function a Flower
hospital and the Flower strategy call piecewise. This class only keeps the run's state (weights,
optimiser state, the ledger) and the budget.
"""
from __future__ import annotations

import math

from trainer.dp.dopamine import dopamine_round, noise_share_std
from trainer.dp.hospital import pool_hospitals
from trainer.dp.per_sample import PerSampleClipper
from trainer.dp.server_optimizers import clone_state
from trainer.modes.base import Mode
from trainer.privacy import PrivacyLedger, resolve_noise_multiplier


class DopamineMode(Mode):
    name = "dopamine"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        c = self.config
        self.name = c.mode
        if c.mode == "central-dp":
            self.hospitals = [pool_hospitals(self.hospitals)]
            self.noise_generators, self.augment_generators = self.noise_generators[:1], self.augment_generators[:1]
            total = self.hospitals[0].num_patients
            if c.batch_size > total:
                raise ValueError(f"batch_size {c.batch_size} exceeds the {total} training patients")
            self.sample_rate = c.batch_size / total
            self.steps_per_round = math.ceil(1 / self.sample_rate)  # a round is an epoch
            k_min = 1
        else:
            self.sample_rate = c.sample_rate
            self.steps_per_round = 1
            k_min = c.min_participants or len(self.hospitals)
        self.total_patients = sum(h.num_patients for h in self.hospitals)
        self.expected_batch = self.sample_rate * self.total_patients  # public: from declared N_k
        self.noise_multiplier = resolve_noise_multiplier(
            noise_multiplier=c.noise_multiplier, target_epsilon=c.target_epsilon, sample_rate=self.sample_rate,
            steps=c.rounds * self.steps_per_round, delta=c.delta, accountant=c.accountant, priors=self.priors)
        self.share_std = noise_share_std(noise_multiplier=self.noise_multiplier, clipping_norm=c.clipping_norm,
                                         min_participants=k_min, colluders=c.colluders)
        self.ledger = PrivacyLedger(delta=c.delta, accountant=c.accountant, target_epsilon=c.target_epsilon,
                                    priors=self.priors)
        self.clipper = PerSampleClipper(self.model, method=c.per_sample_method, clipping_norm=c.clipping_norm)
        self.optimizer_state: dict = {}

    def can_continue(self) -> bool:
        return self.ledger.can_take(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                                    steps=self.steps_per_round)

    def privacy(self) -> dict:
        if self.noise_multiplier == 0:
            return {"epsilon": math.inf, "delta": self.config.delta, "accountant": self.config.accountant,
                    "steps": self.ledger.steps}
        return self.ledger.report()

    def histories(self) -> list[list]:
        return self.ledger.histories() if self.noise_multiplier > 0 else []

    def run_round(self, round_index: int) -> dict:
        losses = 0.0
        for _ in range(self.steps_per_round):
            result = dopamine_round(
                self.clipper, self.weights(), self.optimizer_state, self.hospitals, sample_rate=self.sample_rate,
                share_std=self.share_std, expected_batch_size=self.expected_batch, optimizer=self.settings,
                noise_generators=self.noise_generators, augment=self.augment,
                augment_generators=self.augment_generators)
            self.set_weights(result.weights)
            self.optimizer_state = result.optimizer_state
            if self.noise_multiplier > 0:
                self.ledger.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
            losses += result.loss
        return {"loss": losses / self.steps_per_round, "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": clone_state(self.optimizer_state),
                "ledger": self.ledger.state_dict(), "noise_multiplier": self.noise_multiplier}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.optimizer_state = dict(state["optimizer"])
        self.ledger = PrivacyLedger.from_state_dict(state["ledger"])
        self.noise_multiplier = state["noise_multiplier"]
