"""`dopamine` (federated DP-SGD, noise split across hospitals, summed under secure aggregation,
momentum at the server) and `central-dp` (the same mechanism with one data holder).

A round: every hospital Poisson-samples its patients at rate q, clips each patient's gradient to C
and adds its noise share; the server sees only the sum, divides by the public expected batch size
q·ΣN_k and steps with momentum. For speed the simulator computes the clipped sums of all
hospitals in one batched call (the sum is the same), and draws each hospital's sample, augmentation
and noise from that hospital's own generator in the same order as `hospital_step`, so a Flower
deployment in test mode reproduces the simulator's aggregate.
"""
from __future__ import annotations

import math

import torch

from trainer.dp.hospital import HospitalData, sample_batch
from trainer.dp.mechanism import noise_share_std, server_update, summed_noise_shares
from trainer.dp.per_sample import PerSampleClipper
from trainer.modes.base import Mode
from trainer.privacy import PrivacyLedger, calibrate_noise_multiplier


def pool_hospitals(hospitals: list[HospitalData]) -> HospitalData:
    """One data holder with every hospital's patients (patient indices made disjoint)."""
    patients, start = [], 0
    for h in hospitals:
        patients.append(h.patients + start)
        start += h.num_patients
    return HospitalData(torch.cat([h.images for h in hospitals]), torch.cat([h.labels for h in hospitals]),
                        torch.cat(patients))


class DopamineMode(Mode):
    name = "dopamine"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        c = self.config
        self.name = c.mode
        if c.mode == "central-dp":
            self.hospitals = [pool_hospitals(self.hospitals)]
            self.hospital_generators = self.hospital_generators[:1]
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
        total_steps = c.rounds * self.steps_per_round
        self.noise_multiplier = c.noise_multiplier
        if c.target_epsilon is not None and c.noise_multiplier is None:
            self.noise_multiplier = calibrate_noise_multiplier(
                target_epsilon=c.target_epsilon, sample_rate=self.sample_rate, steps=total_steps,
                delta=c.delta, accountant=c.accountant)
        self.share_std = noise_share_std(noise_multiplier=self.noise_multiplier, clipping_norm=c.clipping_norm,
                                         min_participants=k_min, colluders=c.colluders)
        self.ledger = PrivacyLedger(delta=c.delta, accountant=c.accountant, target_epsilon=c.target_epsilon)
        self.clipper = PerSampleClipper(self.model, method=c.per_sample_method, clipping_norm=c.clipping_norm)
        self.optimizer_state: dict = {}

    def can_continue(self) -> bool:
        if self.noise_multiplier == 0:
            return True
        return self.ledger.epsilon_after(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                                         steps=self.steps_per_round) <= (self.ledger.target_epsilon or math.inf)

    def privacy(self) -> dict:
        if self.noise_multiplier == 0:
            return {"epsilon": math.inf, "delta": self.config.delta, "accountant": self.config.accountant,
                    "steps": self.ledger.steps}
        return self.ledger.report()

    def run_round(self, round_index: int) -> dict:
        losses, patients = 0.0, 0
        for _ in range(self.steps_per_round):
            out = self._step()
            losses, patients = losses + out["loss_sum"], patients + out["patients"]
        return {"loss": losses / max(patients, 1), "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate}

    def _step(self) -> dict:
        c = self.config
        batches = []
        for data, generator in zip(self.hospitals, self.hospital_generators):
            images, labels, patients = sample_batch(data, sample_rate=self.sample_rate, generator=generator)
            if self.augment is not None and len(images):
                images = self.augment(images, generator)
            batches.append((images, labels, patients + 10**9 * len(batches)))  # disjoint patient ids
        images, labels, patients = (torch.cat(parts) for parts in zip(*batches))
        clipped = self.clipper.clipped_sum(images, labels, patients)
        noise = summed_noise_shares(clipped.total.numel(), share_std=self.share_std,
                                    generators=self.hospital_generators, dtype=clipped.total.dtype)
        aggregate = clipped.total + noise.to(clipped.total.device)  # what SecAgg reveals: the sum
        weights, self.optimizer_state = server_update(
            self.weights(), self.optimizer_state, aggregate, optimizer=c.optimizer,
            expected_batch_size=self.expected_batch, learning_rate=c.learning_rate, momentum=c.momentum,
            weight_decay=c.weight_decay)
        self.set_weights(weights)
        if self.noise_multiplier > 0:
            self.ledger.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        return {"loss_sum": clipped.loss_sum, "patients": clipped.num_patients}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": {k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.optimizer_state.items()},
                "ledger": self.ledger.state_dict(), "noise_multiplier": self.noise_multiplier}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.optimizer_state = dict(state["optimizer"])
        self.ledger = PrivacyLedger.from_state_dict(state["ledger"])
        self.noise_multiplier = state["noise_multiplier"]
