"""A hospital node's side of a round: its data, its share (Dopamine) or its local training
(fedavg, fl-parallel-dp), pre-scaled for SecAgg+. The mechanism is the trainer's:
`trainer.dp.dopamine.hospital_shares` and `trainer.dp.local.local_sgd` / `local_dp_sgd`, the
functions the in-process simulator calls; this module only adds the node's guards and encoding.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from edge_client.preprocess import PreprocessConfig
from federation.config import ConfigError, NodeConfig, RunConfig
from federation.node_state import HospitalState, NodeRefusal
from federation.secagg import CLIP_DELTA_FRACTION, DEFAULT_CLIPPING_RANGE, PreScale, prescale
from trainer.data.arrays import load_arrays
from trainer.data.augment import Augment
from trainer.data.datasets import load_dataset
from trainer.dp.dopamine import hospital_shares, load_flat_weights, noise_share_std
from trainer.dp.hospital import HospitalData
from trainer.dp.local import local_dp_sgd, local_sgd
from trainer.dp.noise import seeded_generator
from trainer.dp.per_sample import PerSampleClipper
from trainer.dp.server_optimizers import ServerOptimizer
from trainer.model import build_model
from trainer.modes.fedavg import local_dp_steps
from trainer.privacy import PrivacyLedger, compute_epsilon, resolve_noise_multiplier


def load_hospital(data_dir: str | Path, *, image_size: int, cache_dir: str | Path | None = None) -> HospitalData:
    """This hospital's training patients, from its own folder only (APTOS, EyePACS or folders layout).

    Raises:
        ConfigError: missing folder, bad rows or images (the trainer's message, naming the file), or no patients.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ConfigError(f"node data-dir {root} does not exist")
    try:
        dataset = load_dataset(root)
        images, labels, patients = load_arrays(dataset.samples, PreprocessConfig(image_size=image_size),
                                               cache_dir=cache_dir)
    except ValueError as exc:
        raise ConfigError(f"node data-dir {root}: {str(exc).splitlines()[0]}") from None
    if len(labels) == 0:
        raise ConfigError(f"node data-dir {root} holds no patients")
    return HospitalData(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(patients))


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flat_weights(model: torch.nn.Module) -> torch.Tensor:
    return parameters_to_vector([p for p in model.parameters() if p.requires_grad]).detach().clone()


def check_incoming(weights: np.ndarray, *, expected: int, model_version: str, node_version: str) -> torch.Tensor:
    """The server's weights as a flat tensor, after checking they are for this node's model.

    Raises:
        NodeRefusal: another model version or size.
    """
    if model_version != node_version:
        raise NodeRefusal(f"model version mismatch: server runs {model_version!r}, this node has "
                          f"{node_version!r}; install the matching release on this node")
    if weights.ndim != 1 or weights.size != expected:
        raise NodeRefusal(f"server sent {weights.size} parameters, this node's model has {expected}")
    return torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))


def accountant_delta(run: RunConfig) -> float:
    """δ for the accountants: the run's δ minus what SecAgg+ clipping may cost (Dopamine only)."""
    return run.delta * (1 - CLIP_DELTA_FRACTION) if run.mode == "dopamine" else run.delta


def run_noise_multiplier(run: RunConfig) -> float:
    """σ from the run's public constants, by the trainer's one calibration rule (server and nodes
    compute it alike). noise-multiplier -1 calibrates from target-epsilon over the run's rounds."""
    if run.mode == "fedavg":
        return 0.0
    if run.mode == "fl-parallel-dp":   # each hospital's own q_k and steps: its own budget guards it
        return run.noise_multiplier
    try:
        return resolve_noise_multiplier(
            noise_multiplier=None if run.noise_multiplier < 0 else run.noise_multiplier,
            target_epsilon=run.target_epsilon or None, sample_rate=run.sample_rate, steps=run.rounds,
            delta=accountant_delta(run), accountant=run.accountant)
    except ValueError as exc:
        raise ConfigError(f"run config: {exc}") from None


def epsilon_bound(run: RunConfig, noise_multiplier: float) -> float:
    """ε̄ for sizing SecAgg+'s clipping probability: the run's target, else ε after all rounds."""
    if run.target_epsilon:
        return run.target_epsilon
    if noise_multiplier <= 0:
        return 0.0
    return compute_epsilon(noise_multiplier=noise_multiplier, sample_rate=run.sample_rate, steps=run.rounds,
                           delta=accountant_delta(run), accountant=run.accountant)


def run_prescale(run: RunConfig, *, dimension: int, noise_multiplier: float) -> PreScale:
    """The run's public SecAgg+ scale (secagg.prescale over the run's constants)."""
    std = noise_share_std(noise_multiplier=noise_multiplier, clipping_norm=run.clipping_norm,
                          min_participants=run.k_min, colluders=run.colluders)
    return prescale(clipping_norm=run.clipping_norm, noise_share_std=std, max_patients=run.max_patients,
                    sample_rate=run.sample_rate, dimension=dimension, rounds=run.rounds,
                    hospitals=run.hospitals, delta=run.delta,
                    epsilon_bound=epsilon_bound(run, noise_multiplier))


def released_delta(run: RunConfig, prescale: PreScale | None, epsilon: float) -> float:
    """The δ to report with ε: δ_acc + (1 + e^ε)·η (never below what clipping really costs)."""
    if prescale is None or math.isinf(epsilon):
        return run.delta
    cost = accountant_delta(run) + (1 + math.exp(min(epsilon, 700.0))) * prescale.clip_probability
    return max(run.delta, cost)


class Hospital:
    """One hospital node for one round: its data, model, guards and (test mode only) generators."""

    def __init__(self, run: RunConfig, node: NodeConfig, *, run_id: int = 0) -> None:
        self.run, self.node, self.run_id = run, node, run_id
        self.state = HospitalState(node.state_dir, delta=accountant_delta(run), accountant=run.accountant,
                                   target_epsilon=node.target_epsilon or run.target_epsilon or None)
        self.data = load_hospital(node.data_dir, image_size=run.image_size,
                                  cache_dir=Path(node.state_dir) / "cache")
        if self.data.num_patients > run.max_patients:   # the refusal must not reveal N_k itself
            raise NodeRefusal(f"this hospital holds more patients than the run's declared max-patients="
                              f"{run.max_patients}: the SecAgg+ scale would clip its share; declare a larger max")
        self.model = build_model(5, dropout=run.dropout)
        self.settings = ServerOptimizer(run.optimizer, learning_rate=run.learning_rate, momentum=run.momentum,
                                        weight_decay=run.weight_decay)
        self.generators = {"noise": None, "augment": None}
        if node.test_mode and node.hospital_index >= 0:   # the simulator's hospital k: streams k + 1
            stream = node.hospital_index + 1
            self.generators = self.state.load_generators(
                {"noise": seeded_generator(run.noise_seed_or_none, stream),
                 "augment": seeded_generator(run.seed_or_none, stream)}, run_id=run_id)
        elif run.noise_seed_or_none is not None:
            raise ConfigError("test mode needs node config hospital-index (the simulator's hospital k)")
        self.augment = Augment(PreprocessConfig(image_size=run.image_size)) if run.augment else None

    def _save_generators(self) -> None:
        self.state.save_generators(self.generators, run_id=self.run_id)

    def dopamine_share(self, weights: torch.Tensor) -> np.ndarray:
        """s_k / M: this hospital's clipped sum plus its noise share, pre-scaled for SecAgg+.

        σ and M come from the public run constants here, not from the server. The round is counted
        in this hospital's ledger, on disk, before the share leaves.
        """
        run = self.run
        sigma = run_noise_multiplier(run)
        scale = run_prescale(run, dimension=weights.numel(), noise_multiplier=sigma).scale
        std = noise_share_std(noise_multiplier=sigma, clipping_norm=run.clipping_norm,
                              min_participants=max(run.k_min, self.node.min_participants), colluders=run.colluders)
        self.state.check_budget(noise_multiplier=sigma, sample_rate=run.sample_rate)
        clipper = PerSampleClipper(self.model, method=run.per_sample_method, clipping_norm=run.clipping_norm)
        load_flat_weights(clipper.params, weights)
        share = hospital_shares(clipper, [self.data], sample_rate=run.sample_rate, share_std=std,
                                noise_generators=[self.generators["noise"]], augment=self.augment,
                                augment_generators=[self.generators["augment"]]).total
        self.state.record(noise_multiplier=sigma, sample_rate=run.sample_rate)
        self._save_generators()
        return (share.double() / scale).numpy()

    def local_weights(self, weights: torch.Tensor) -> np.ndarray:
        """fedavg / fl-parallel-dp: the trainer's local training on this hospital alone, from w_t,
        sent as w / weight-scale (SecAgg+ sums them; the server divides by ΣN_k)."""
        run = self.run
        load_flat_weights([p for p in self.model.parameters() if p.requires_grad], weights)
        if run.mode == "fl-parallel-dp":
            sigma = run_noise_multiplier(run)
            q, steps = local_dp_steps(self.data.num_patients, local_batch_size=run.local_batch_size,
                                      local_epochs=run.local_epochs)
            self.state.check_budget(noise_multiplier=sigma, sample_rate=q, steps=steps)
            clipper = PerSampleClipper(self.model, method=run.per_sample_method, clipping_norm=run.clipping_norm)
            scratch = PrivacyLedger(delta=accountant_delta(run), accountant=run.accountant)
            local_dp_sgd(clipper, weights, self.data, sample_rate=q, steps=steps, noise_multiplier=sigma,
                         settings=self.settings, ledger=scratch, noise_generator=self.generators["noise"],
                         augment=self.augment, augment_generator=self.generators["augment"])
            self.state.record_steps([(sigma, q)] * steps)
        else:
            local_sgd(self.model, self.data, epochs=run.local_epochs, batch_size=run.local_batch_size,
                      settings=self.settings, augment=self.augment, generator=self.generators["augment"])
        self._save_generators()
        scaled = (flat_weights(self.model).double() / run.weight_scale).numpy()
        if np.abs(scaled).max() >= DEFAULT_CLIPPING_RANGE:   # SecAgg+ would clip: refuse, do not distort
            raise NodeRefusal(f"local weights reach {np.abs(scaled).max() * run.weight_scale:.1f}, beyond "
                              f"SecAgg+'s range ±{DEFAULT_CLIPPING_RANGE * run.weight_scale:g}: raise weight-scale")
        return scaled
