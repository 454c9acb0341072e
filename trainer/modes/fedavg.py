"""`fedavg` (no privacy) and `fl-parallel-dp` (each hospital runs DP-SGD with the full noise on its
own data; the server averages weights), as in the paper.

The hospitals' local training is `trainer.dp.local.local_sgd` / `local_dp_sgd`, the functions the
Flower ClientApp calls. In `fl-parallel-dp` each hospital keeps one accountant for the whole run,
counting only the rounds it took part in, and sits out rounds past its budget; a patient's
guarantee is the MAX over hospitals (the mean is reported only to compare with the paper's plot).
"""
from __future__ import annotations

import math

import torch

from trainer.dp.local import local_dp_sgd, local_sgd
from trainer.dp.per_sample import PerSampleClipper
from trainer.modes.base import Mode
from trainer.privacy import PrivacyLedger, resolve_noise_multiplier, round_up


def local_dp_steps(num_patients: int, *, local_batch_size: int, local_epochs: int) -> tuple[float, int]:
    """A hospital's own sampling rate q_k = B / N_k (capped at 1) and its steps per round."""
    q = min(1.0, local_batch_size / num_patients)
    return q, local_epochs * math.ceil(1 / q)


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
        c = self.config
        return local_sgd(self.model, self.hospitals[k], epochs=c.local_epochs, batch_size=c.local_batch_size,
                         settings=self.settings, augment=self.augment, generator=self.augment_generators[k])


class ParallelDPMode(FedAvgMode):
    name = "fl-parallel-dp"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        c = self.config
        plans = [local_dp_steps(h.num_patients, local_batch_size=c.local_batch_size, local_epochs=c.local_epochs)
                 for h in self.hospitals]
        self.sample_rates = [q for q, _ in plans]
        self.local_steps = [steps for _, steps in plans]
        # Worst case: a hospital that takes part in every round, at the highest sampling rate.
        worst = max(range(len(self.hospitals)), key=lambda k: self.sample_rates[k])
        self.noise_multiplier = resolve_noise_multiplier(
            noise_multiplier=c.noise_multiplier, target_epsilon=c.target_epsilon,
            sample_rate=self.sample_rates[worst], steps=c.rounds * self.local_steps[worst], delta=c.delta,
            accountant=c.accountant, priors=self.priors)
        if not self.noise_multiplier > 0:
            raise ValueError("fl-parallel-dp needs a noise multiplier > 0 (or a target epsilon)")
        self.ledgers = [PrivacyLedger(delta=c.delta, accountant=c.accountant, target_epsilon=c.target_epsilon,
                                      priors=self.priors) for _ in self.hospitals]
        self.clipper = PerSampleClipper(self.model, method=c.per_sample_method, clipping_norm=c.clipping_norm)

    def local_training(self, k: int) -> float | None:
        """Local DP-SGD with the full noise σC on this hospital's own data; None past its budget."""
        q, steps, ledger = self.sample_rates[k], self.local_steps[k], self.ledgers[k]
        if not ledger.can_take(noise_multiplier=self.noise_multiplier, sample_rate=q, steps=steps):
            return None
        result = local_dp_sgd(self.clipper, self.weights(), self.hospitals[k], sample_rate=q, steps=steps,
                              noise_multiplier=self.noise_multiplier, settings=self.settings, ledger=ledger,
                              noise_generator=self.noise_generators[k], augment=self.augment,
                              augment_generator=self.augment_generators[k])
        return result.loss

    def can_continue(self) -> bool:
        return any(ledger.can_take(noise_multiplier=self.noise_multiplier, sample_rate=q, steps=steps)
                   for ledger, q, steps in zip(self.ledgers, self.sample_rates, self.local_steps))

    def privacy(self) -> dict:
        """The guarantee for a patient is the worst hospital's ε; the mean is for comparison only."""
        epsilons = [ledger.epsilon() for ledger in self.ledgers]
        c = self.config
        return {"epsilon": round_up(max(epsilons)), "epsilon_mean": round_up(sum(epsilons) / len(epsilons)),
                "delta": c.delta, "accountant": c.accountant, "steps": max(l.steps for l in self.ledgers)}

    def histories(self) -> list[list]:
        return [h for ledger in self.ledgers for h in ledger.histories()]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ledgers": [l.state_dict() for l in self.ledgers],
                "noise_multiplier": self.noise_multiplier}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ledgers = [PrivacyLedger.from_state_dict(s) for s in state["ledgers"]]
        self.noise_multiplier = state["noise_multiplier"]
