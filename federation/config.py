"""The run config (pyproject `[tool.flwr.app.config]`, `flwr run -c ...`) and the node config
(`flower-supernode --node-config ...`), read once into typed objects and validated.

`RunConfig`'s field defaults are the one source of the run config's defaults: the app's
pyproject.toml repeats them because Flower reads them there, and a test keeps the two equal.
Flower config values cannot be None: -1 (or 0 for a budget) stands for "not set".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from trainer.config import FEDERATED_MODES, TrainConfig, validate

# trainer.model.ARCH, spelled out so that the light SecAgg+ stages never import torch (a test
# checks they agree). Bump the suffix when the architecture or the flat-vector layout changes.
ARCH = "squeezenet1_1-dr"
MODEL_VERSION = f"{ARCH}/v1"


class ConfigError(ValueError):
    """A bad run or node config; the message names the key."""


@dataclass(frozen=True)
class RunConfig:
    mode: str = "dopamine"
    rounds: int = 2
    hospitals: int = 3                  # K expected
    min_participants: int = 0           # K_min; 0 = every hospital
    colluders: int = 0
    total_patients: int = 60            # declared Σ N_k (public)
    max_patients: int = 20              # declared max N_k (public; sets the SecAgg+ scale)
    sample_rate: float = 0.3
    clipping_norm: float = 1.0
    noise_multiplier: float = 1.0       # -1: calibrate from target_epsilon
    target_epsilon: float = 0.0         # 0: no budget
    delta: float = 1e-5
    accountant: str = "rdp"
    learning_rate: float = 0.5
    optimizer: str = "sgd"              # server optimizer: sgd (the paper's) | adam (trainer/dp/server_optimizers.py)
    momentum: float = 0.9
    weight_decay: float = 0.0
    image_size: int = 32
    augment: bool = False
    dropout: float = 0.0
    local_epochs: int = 1
    local_batch_size: int = 8
    per_sample_method: str = "functorch"
    seed: int = -1                      # experiment seed: w_0 and (test mode) augmentation; never the noise
    noise_seed: int = -1                # TEST ONLY (>= 0): seeds noise and sampling; only test-mode nodes accept it
    model_version: str = MODEL_VERSION
    secagg_timeout: float = 120.0       # seconds a SecAgg+ stage waits for replies
    server_poll_interval: float = 0.0   # >0: ServerApp polls replies this often (federation/polling.py)
    node_wait: float = 60.0             # seconds the server waits for K hospitals before a round
    weight_scale: float = 8.0           # fedavg/fl-parallel-dp: weights sent as w / weight_scale
    eval_data: str = ""                 # server's held-out set (APTOS layout); "" = none
    out_dir: str = ""                   # where the server writes results.json (+ test aggregates)
    init_weights: str = ""              # a model.pt to start from; "" = fresh model
    init_weights_public: bool = False   # the operator declares init-weights trained on public data only
    sim_data_root: str = ""             # simulation engine only: <root>/hospital-<partition-id>
    sim_state_root: str = ""

    @property
    def k_min(self) -> int:
        return self.min_participants or self.hospitals

    @property
    def seed_or_none(self) -> int | None:
        return self.seed if self.seed >= 0 else None

    @property
    def noise_seed_or_none(self) -> int | None:
        return self.noise_seed if self.noise_seed >= 0 else None

    @classmethod
    def from_flower(cls, run_config: Mapping[str, Any]) -> "RunConfig":
        """Raises ConfigError naming an unknown key or a bad value."""
        return _typed(cls, run_config, "run config")

    def train_config(self, *, hospitals: int | None = None) -> TrainConfig:
        """The trainer's config for the same settings (validated)."""
        c = TrainConfig(
            mode=self.mode, hospitals=hospitals or self.hospitals, rounds=self.rounds,
            min_participants=self.k_min if hospitals is None else None, colluders=self.colluders,
            sample_rate=self.sample_rate, clipping_norm=self.clipping_norm,
            noise_multiplier=None if self.noise_multiplier < 0 else self.noise_multiplier,
            target_epsilon=self.target_epsilon or None, delta=self.delta, accountant=self.accountant,
            learning_rate=self.learning_rate, optimizer=self.optimizer, momentum=self.momentum, weight_decay=self.weight_decay,
            image_size=self.image_size, augment=self.augment, dropout=self.dropout,
            local_epochs=self.local_epochs, local_batch_size=self.local_batch_size, client_fraction=1.0,
            per_sample_method=self.per_sample_method, seed=self.seed_or_none, noise_seed=self.noise_seed_or_none)
        try:
            validate(c)
        except ValueError as exc:
            raise ConfigError(f"run config: {exc}") from None
        return c

    def check(self) -> None:
        if self.mode not in FEDERATED_MODES:
            raise ConfigError(f"run config mode must be one of {FEDERATED_MODES}, got {self.mode!r}")
        if self.hospitals < 2:
            raise ConfigError(f"run config hospitals must be >= 2 (SecAgg+ needs two), got {self.hospitals}")
        if self.mode == "dopamine" and not 2 <= self.k_min <= self.hospitals:
            raise ConfigError(f"run config min-participants must be in [2, hospitals={self.hospitals}], "
                              f"got {self.k_min}")
        if self.mode == "fl-parallel-dp" and not self.noise_multiplier > 0:
            raise ConfigError("run config noise-multiplier must be > 0 for fl-parallel-dp (each hospital "
                              "adds the full noise itself)")
        if self.max_patients < 1 or self.total_patients < self.max_patients:
            raise ConfigError("run config needs 1 <= max-patients <= total-patients "
                              f"(got {self.max_patients}, {self.total_patients})")
        if not self.delta < 1 / self.total_patients:
            raise ConfigError(f"run config delta {self.delta} must be below 1/N = {1 / self.total_patients:.3g} "
                              f"(N = total-patients = {self.total_patients})")
        if self.secagg_timeout <= 0:
            raise ConfigError(f"run config secagg-timeout must be > 0 s, got {self.secagg_timeout}")
        self.train_config()


@dataclass(frozen=True)
class NodeConfig:
    data_dir: str = ""
    state_dir: str = ""
    test_mode: bool = False
    hospital_index: int = -1            # test mode: generator stream k+1, as in the simulator
    target_epsilon: float = 0.0         # this hospital's own budget; 0: take the run's
    min_participants: int = 0           # this hospital's own floor for K_min; 0: take the run's

    @classmethod
    def from_flower(cls, node_config: Mapping[str, Any], run: RunConfig) -> "NodeConfig":
        """Deployment nodes name `data-dir` and `state-dir`; the simulation engine gives only
        `partition-id`, mapped to `<sim-data-root>/hospital-<id>` (a simulation is a test run)."""
        values = dict(node_config)
        if "partition-id" in values and "data-dir" not in values:
            pid = int(values.pop("partition-id"))
            values.pop("num-partitions", None)
            if not run.sim_data_root:
                raise ConfigError("simulation run needs run config sim-data-root")
            values.update({"data-dir": str(Path(run.sim_data_root) / f"hospital-{pid}"),
                           "state-dir": str(Path(run.sim_state_root or run.sim_data_root) / f"state-{pid}"),
                           "test-mode": True, "hospital-index": pid})
        node = _typed(cls, values, "node config")
        for key in ("data_dir", "state_dir"):
            if not getattr(node, key):
                raise ConfigError(f"node config {key.replace('_', '-')} is missing: start the SuperNode with "
                                  f"--node-config 'data-dir=\"...\" state-dir=\"...\"'")
        return node


def _typed(cls, values: Mapping[str, Any], where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: "
                              f"{sorted(k.replace('_', '-') for k in fields)}")
        kind = type(fields[name].default)
        try:
            if kind is bool and not isinstance(value, bool):
                raise TypeError
            out[name] = kind(value) if kind in (int, float, str) and not isinstance(value, bool) else value
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {key} must be {kind.__name__}, got {value!r}") from None
    return cls(**out)
