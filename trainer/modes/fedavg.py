"""`fedavg` (no privacy) and `fl-parallel-dp` (each hospital runs DP-SGD with the full noise on its
own data; the server averages weights), as in the paper.

In `fl-parallel-dp` each hospital keeps one accountant for the whole run, counting only the rounds
it took part in, and stops training past its budget; a patient's guarantee is the MAX over
hospitals (the mean is reported only to compare with the paper's plot).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.dp.hospital import sample_batch
from trainer.dp.mechanism import gaussian_noise, server_update
from trainer.dp.per_sample import PerSampleClipper
from trainer.modes.base import Mode, make_torch_optimizer
from trainer.privacy import PrivacyLedger, calibrate_noise_multiplier, round_up


class FedAvgMode(Mode):
    name = "fedavg"

    def selected_hospitals(self) -> list[int]:
        """This round's participants: a fraction of hospitals drawn by the server."""
        k = len(self.hospitals)
        m = max(1, round(self.config.client_fraction * k))
        return sorted(torch.randperm(k, generator=self.server_generator)[:m].tolist())

    def run_round(self, round_index: int) -> dict:
        global_weights = self.weights()
        total, weight_sum, losses = torch.zeros_like(global_weights), 0.0, []
        for k in self.selected_hospitals():
            self.set_weights(global_weights)
            loss = self.local_training(k)
            if loss is None:  # a hospital out of budget sits the round out
                continue
            n_k = float(self.hospitals[k].num_patients)
            total += n_k * self.weights()
            weight_sum += n_k
            losses.append(loss)
        self.set_weights(total / weight_sum if weight_sum else global_weights)
        return {"loss": sum(losses) / max(len(losses), 1), "participants": len(losses)}

    def local_training(self, k: int) -> float | None:
        """Local epochs of minibatch SGD (momentum) from the global weights; mean loss."""
        c, data, generator = self.config, self.hospitals[k], self.hospital_generators[k]
        optimizer = make_torch_optimizer(self.params, c)
        self.model.train()
        total, count = 0.0, 0
        for _ in range(c.local_epochs):
            order = torch.randperm(len(data.labels), generator=generator)
            for start in range(0, len(order), c.local_batch_size):
                idx = order[start:start + c.local_batch_size]
                images = data.images[idx]
                if self.augment is not None:
                    images = self.augment(images, generator)
                device = self.params[0].device
                loss = F.cross_entropy(self.model(images.to(device)), data.labels[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * len(idx), count + len(idx)
        return total / max(count, 1)


class ParallelDPMode(FedAvgMode):
    name = "fl-parallel-dp"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        c = self.config
        self.sample_rates = [min(1.0, c.local_batch_size / h.num_patients) for h in self.hospitals]
        self.local_steps = [c.local_epochs * math.ceil(1 / q) for q in self.sample_rates]
        self.noise_multiplier = c.noise_multiplier
        if c.target_epsilon is not None and c.noise_multiplier is None:
            # Worst case: a hospital that takes part in every round, at the highest sampling rate.
            worst = max(range(len(self.hospitals)), key=lambda k: self.sample_rates[k])
            self.noise_multiplier = calibrate_noise_multiplier(
                target_epsilon=c.target_epsilon, sample_rate=self.sample_rates[worst],
                steps=c.rounds * self.local_steps[worst], delta=c.delta, accountant=c.accountant)
        if not self.noise_multiplier > 0:
            raise ValueError("fl-parallel-dp needs a noise multiplier > 0 (or a target epsilon)")
        self.ledgers = [PrivacyLedger(delta=c.delta, accountant=c.accountant, target_epsilon=c.target_epsilon)
                        for _ in self.hospitals]
        self.clipper = PerSampleClipper(self.model, method=c.per_sample_method, clipping_norm=c.clipping_norm)

    def local_training(self, k: int) -> float | None:
        """Local DP-SGD with the full noise σC on this hospital's own expected batch."""
        c, data, generator = self.config, self.hospitals[k], self.hospital_generators[k]
        q, ledger = self.sample_rates[k], self.ledgers[k]
        if ledger.epsilon_after(noise_multiplier=self.noise_multiplier, sample_rate=q,
                                steps=self.local_steps[k]) > (ledger.target_epsilon or math.inf):
            return None
        expected_batch = q * data.num_patients
        optimizer_state: dict = {}
        loss_sum, patients = 0.0, 0
        for _ in range(self.local_steps[k]):
            images, labels, pids = sample_batch(data, sample_rate=q, generator=generator)
            if self.augment is not None and len(images):
                images = self.augment(images, generator)
            clipped = self.clipper.clipped_sum(images, labels, pids)
            noisy = clipped.total + gaussian_noise(clipped.total.numel(), std=self.noise_multiplier * c.clipping_norm,
                                                   generator=generator, dtype=clipped.total.dtype).to(clipped.total.device)
            weights, optimizer_state = server_update(
                self.weights(), optimizer_state, noisy, optimizer=c.optimizer, expected_batch_size=expected_batch,
                learning_rate=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay)
            self.set_weights(weights)
            ledger.step(noise_multiplier=self.noise_multiplier, sample_rate=q)
            loss_sum, patients = loss_sum + clipped.loss_sum, patients + clipped.num_patients
        return loss_sum / max(patients, 1)

    def can_continue(self) -> bool:
        return any(
            ledger.epsilon_after(noise_multiplier=self.noise_multiplier, sample_rate=q, steps=steps)
            <= (ledger.target_epsilon or math.inf)
            for ledger, q, steps in zip(self.ledgers, self.sample_rates, self.local_steps))

    def privacy(self) -> dict:
        """The guarantee for a patient is the worst hospital's ε; the mean is for comparison only."""
        epsilons = [ledger.epsilon() for ledger in self.ledgers]
        c = self.config
        return {"epsilon": round_up(max(epsilons)), "epsilon_mean": round_up(sum(epsilons) / len(epsilons)),
                "delta": c.delta, "accountant": c.accountant, "steps": max(l.steps for l in self.ledgers)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ledgers": [l.state_dict() for l in self.ledgers],
                "noise_multiplier": self.noise_multiplier}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ledgers = [PrivacyLedger.from_state_dict(s) for s in state["ledgers"]]
        self.noise_multiplier = state["noise_multiplier"]
