"""The glue between Flower and the trainer: a hospital's data, its share, its local training,
and the flat-vector encoding. The mechanism itself is the trainer's (`hospital_step`,
`FedAvgMode.local_training`, `ParallelDPMode.local_training`), the same code the in-process
simulator runs.
"""
from __future__ import annotations

import time
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
from trainer.dp.hospital import HospitalData, hospital_step
from trainer.dp.mechanism import noise_share_std
from trainer.dp.per_sample import PerSampleClipper
from trainer.model import build_model
from trainer.modes.base import make_generator
from trainer.privacy import calibrate_noise_multiplier


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


def resolve_noise_multiplier(run: RunConfig) -> float:
    """σ from the run config, or calibrated from target-epsilon over the run's rounds (dopamine).

    Server and hospitals each compute it from the same public constants.
    """
    if run.noise_multiplier >= 0:
        return run.noise_multiplier
    if run.mode != "dopamine" or not run.target_epsilon:
        raise ConfigError("run config noise-multiplier -1 (calibrate) needs mode dopamine and target-epsilon")
    return calibrate_noise_multiplier(target_epsilon=run.target_epsilon, sample_rate=run.sample_rate,
                                      steps=run.rounds, delta=Hospital.accountant_delta(run),
                                      accountant=run.accountant)


def run_prescale(run: RunConfig, *, dimension: int, noise_multiplier: float) -> PreScale:
    """The run's public SecAgg+ scale (secagg.prescale over the run's constants)."""
    std = noise_share_std(noise_multiplier=noise_multiplier, clipping_norm=run.clipping_norm,
                          min_participants=run.k_min, colluders=run.colluders)
    return prescale(clipping_norm=run.clipping_norm, noise_share_std=std, max_patients=run.max_patients,
                    sample_rate=run.sample_rate, dimension=dimension, rounds=run.rounds,
                    hospitals=run.hospitals, delta=run.delta)


class Hospital:
    """One hospital node for one run: its data, model, guards and (test mode) generator."""

    def __init__(self, run: RunConfig, node: NodeConfig, *, run_id: int = 0) -> None:
        self.run, self.node, self.run_id = run, node, run_id
        self.state = HospitalState(node.state_dir, delta=self.accountant_delta(run), accountant=run.accountant,
                                   target_epsilon=node.target_epsilon or run.target_epsilon or None)
        self.data = load_hospital(node.data_dir, image_size=run.image_size,
                                  cache_dir=Path(node.state_dir) / "cache")
        if self.data.num_patients > run.max_patients:
            raise NodeRefusal(f"this hospital has {self.data.num_patients} patients but the run declares at most "
                              f"max-patients={run.max_patients}: the SecAgg+ scale would clip its share")
        self.model = build_model(5, dropout=run.dropout)
        self.generator = None
        if run.seed_or_none is not None:
            if node.hospital_index < 0:
                raise ConfigError("test mode needs node config hospital-index (the simulator's hospital k)")
            self.generator = self.state.load_generator(make_generator(run.seed_or_none, node.hospital_index + 1),
                                                       run_id=run_id)
        self.augment = Augment(PreprocessConfig(image_size=run.image_size)) if run.augment else None

    @staticmethod
    def accountant_delta(run: RunConfig) -> float:
        return run.delta * (1 - CLIP_DELTA_FRACTION) if run.mode == "dopamine" else run.delta

    def _stall(self, server_round: int) -> None:
        run, node = self.run, self.node
        if node.test_mode and node.hospital_index == run.test_stall_hospital and server_round == run.test_stall_round:
            (Path(node.state_dir) / f"stalled-round-{server_round}").touch()
            time.sleep(run.test_stall_seconds)

    def dopamine_share(self, weights: torch.Tensor, *, server_round: int) -> np.ndarray:
        """s_k / M: the clipped sum plus this hospital's noise share, pre-scaled for SecAgg+.

        σ and the scale M are computed here from the public run constants, not taken from the
        server. The round is counted in this hospital's ledger (and saved) before the share leaves.
        """
        run = self.run
        noise_multiplier = resolve_noise_multiplier(run)
        prescale = run_prescale(run, dimension=weights.numel(), noise_multiplier=noise_multiplier)
        k_min = max(run.k_min, self.node.min_participants)
        std = noise_share_std(noise_multiplier=noise_multiplier, clipping_norm=run.clipping_norm,
                              min_participants=k_min, colluders=run.colluders)
        self.state.check_budget(noise_multiplier=noise_multiplier, sample_rate=run.sample_rate)
        clipper = PerSampleClipper(self.model, method=run.per_sample_method, clipping_norm=run.clipping_norm)
        self._stall(server_round)
        share = hospital_step(clipper, weights, self.data, sample_rate=run.sample_rate, noise_std=std,
                              generator=self.generator, augment=self.augment)
        self.state.record(noise_multiplier=noise_multiplier, sample_rate=run.sample_rate)
        if self.generator is not None:
            self.state.save_generator(self.generator, run_id=self.run_id)
        return (share.double() / prescale.scale).numpy()

    def local_weights(self, weights: torch.Tensor, *, server_round: int) -> np.ndarray:
        """fedavg / fl-parallel-dp: the trainer's local training on this hospital alone, from w_t."""
        from trainer.modes.fedavg import FedAvgMode, ParallelDPMode
        noise_multiplier = max(self.run.noise_multiplier, 0.0)
        config = self.run.train_config(hospitals=1)
        if self.run.mode == "fl-parallel-dp":
            config.noise_multiplier, config.target_epsilon = noise_multiplier, None
        cls = ParallelDPMode if self.run.mode == "fl-parallel-dp" else FedAvgMode
        mode = cls(model=self.model, hospitals=[self.data], config=config, augment=self.augment)
        mode.hospital_generators = [self.generator]
        mode.set_weights(weights)
        if self.run.mode == "fl-parallel-dp":
            self.state.check_budget(noise_multiplier=noise_multiplier, sample_rate=mode.sample_rates[0],
                                    steps=mode.local_steps[0])
            mode.ledgers = [self.state.ledger]
        self._stall(server_round)
        before = mode.ledgers[0].steps if self.run.mode == "fl-parallel-dp" else 0
        mode.local_training(0)
        if self.run.mode == "fl-parallel-dp":
            taken = mode.ledgers[0].steps - before
            self.state.record_steps([(noise_multiplier, mode.sample_rates[0])] * taken)
        if self.generator is not None:
            self.state.save_generator(self.generator, run_id=self.run_id)
        scaled = (mode.weights().double() / self.run.weight_scale).numpy()
        if np.abs(scaled).max() >= DEFAULT_CLIPPING_RANGE:   # SecAgg+ would clip: refuse, do not distort
            raise NodeRefusal(f"local weights reach {np.abs(scaled).max() * self.run.weight_scale:.1f}, beyond "
                              f"SecAgg+'s range ±{DEFAULT_CLIPPING_RANGE * self.run.weight_scale:g}: raise weight-scale")
        return scaled
