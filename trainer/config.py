"""Training configuration: one typed object, read once, validated before any training starts.

Precedence: dataclass defaults < preset < TOML file (--config) < command-line flags. Every run
records the fully resolved config in RUN/config.json.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("central", "central-dp", "fedavg", "fl-parallel-dp", "dopamine")
PRIVATE_MODES = ("central-dp", "fl-parallel-dp", "dopamine")
FEDERATED_MODES = ("fedavg", "fl-parallel-dp", "dopamine")


@dataclass
class TrainConfig:
    mode: str = "dopamine"
    data: str = ""
    out: str = "runs/latest"
    preset: str | None = None
    # data
    image_size: int = 64
    split_file: str | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    max_patients: int | None = None          # use only this many training patients (quick runs)
    augment: bool = True
    # federation
    hospitals: int = 10
    partition: str = "iid"                   # iid | dirichlet | quantity
    dirichlet_alpha: float = 0.5
    min_participants: int | None = None      # K_min; None: every hospital must take part
    colluders: int = 0                       # t: hospitals that may pool their noise knowledge
    client_fraction: float = 1.0             # fedavg / fl-parallel-dp: share of hospitals per round
    local_epochs: int = 1                    # fedavg / fl-parallel-dp
    local_batch_size: int = 32               # fedavg / fl-parallel-dp (expected batch for DP)
    # optimisation
    rounds: int = 30                         # communication rounds; epochs for central modes
    batch_size: int = 32                     # central: minibatch; central-dp: expected batch (q·N)
    learning_rate: float = 0.05
    optimizer: str = "sgd"                   # sgd (the paper's) | adam (β1 = momentum); see trainer/dp/server_optimizers.py
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.5
    weights: str | None = None               # warm start: a local state dict or checkpoint for the body
    weights_public: bool = False             # the user declares --weights trained on public data only
    # privacy
    sample_rate: float = 0.1                 # dopamine: per-patient Poisson rate q
    clipping_norm: float = 2.0
    noise_multiplier: float | None = None    # σ; None: calibrated from target_epsilon
    target_epsilon: float | None = None      # calibrates σ before training; stops at the budget
    delta: float = 1e-5
    accountant: str = "rdp"
    per_sample_method: str = "opacus-ew"
    # execution
    seed: int | None = 0                     # experiment seed: split, init, augmentation (never the noise)
    noise_seed: int | None = None            # TEST ONLY: seeds DP noise and sampling; voids the guarantee
    device: str = "cpu"
    threads: int | None = None
    eval_every: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def private(self) -> bool:
        return self.mode in PRIVATE_MODES

    @property
    def federated(self) -> bool:
        return self.mode in FEDERATED_MODES


# The paper's settings (Malekzadeh et al. 2021; their code's README): per mode where they differ.
# The paper started from ImageNet weights; pass --weights to do the same.
PAPER = {
    "common": dict(image_size=224, hospitals=10, partition="iid", momentum=0.9, clipping_norm=2.0,
                   delta=1e-4, accountant="rdp", val_fraction=0.1, test_fraction=0.2, augment=True),
    "central": dict(rounds=100, batch_size=50, learning_rate=0.001),
    "central-dp": dict(rounds=100, batch_size=50, learning_rate=0.001, noise_multiplier=1.0),
    "fedavg": dict(rounds=100, client_fraction=0.5, local_epochs=5, local_batch_size=50, learning_rate=0.002),
    "fl-parallel-dp": dict(rounds=100, client_fraction=0.5, local_epochs=5, local_batch_size=50,
                           learning_rate=0.002, noise_multiplier=2.0),
    # 30001 iterations at q = 0.03425 (about 10 patients per hospital, 100 in all, per round).
    "dopamine": dict(rounds=30001, sample_rate=0.03425, learning_rate=0.002, noise_multiplier=1.15,
                     eval_every=100),
}

# Finishes in minutes on 2 CPU cores at 64 px on `python -m trainer synth --n 1500` data.
DEMO = {
    "common": dict(image_size=64, hospitals=5, partition="iid", momentum=0.9, clipping_norm=1.0,
                   delta=1e-5, accountant="rdp", augment=True, dropout=0.0, optimizer="adam"),
    "central": dict(rounds=15, batch_size=32, learning_rate=5e-4),
    "central-dp": dict(rounds=10, batch_size=128, learning_rate=3e-4, target_epsilon=8.0,
                       noise_multiplier=None),
    "fedavg": dict(rounds=10, client_fraction=1.0, local_epochs=1, local_batch_size=32, learning_rate=5e-4),
    "fl-parallel-dp": dict(rounds=10, client_fraction=1.0, local_epochs=1, local_batch_size=32,
                           learning_rate=3e-4, target_epsilon=8.0, noise_multiplier=None),
    "dopamine": dict(rounds=40, sample_rate=0.1, learning_rate=3e-4, target_epsilon=8.0,
                     noise_multiplier=None),
}
PRESETS = {"paper": PAPER, "demo": DEMO}


def preset_values(preset: str, mode: str) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    table = PRESETS[preset]
    return {**table["common"], **table.get(mode, {})}


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; allowed keys: {sorted(known)}")
    return values


def resolve(mode: str, *, preset: str | None = None, toml_path: str | None = None,
            overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Build the config in precedence order; `overrides` holds only flags the user gave."""
    values: dict[str, Any] = {"mode": mode}
    if preset:
        values.update(preset_values(preset, mode))
        values["preset"] = preset
    if toml_path:
        values.update(load_toml(toml_path))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values["mode"] = values.get("mode", mode)
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Fail before training on settings that cannot work, saying what to change."""
    c = config
    if c.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {c.mode!r}")
    if c.partition not in ("iid", "dirichlet", "quantity"):
        raise ValueError(f"partition must be iid, dirichlet or quantity, got {c.partition!r}")
    if c.optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be sgd or adam, got {c.optimizer!r}")
    if c.accountant not in ("rdp", "prv"):
        raise ValueError(f"accountant must be rdp or prv, got {c.accountant!r}")
    for name in ("rounds", "batch_size", "local_epochs", "local_batch_size", "image_size", "eval_every"):
        if getattr(c, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
    if c.image_size < 32:
        raise ValueError(f"image_size must be >= 32 (SqueezeNet downsamples 16x), got {c.image_size}")
    if c.hospitals < 1:
        raise ValueError(f"hospitals must be >= 1, got {c.hospitals}")
    if not 0 < c.sample_rate <= 1:
        raise ValueError(f"sample_rate q must be in (0, 1], got {c.sample_rate}; lower it or add patients")
    if not 0 < c.client_fraction <= 1:
        raise ValueError(f"client_fraction must be in (0, 1], got {c.client_fraction}")
    if c.learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {c.learning_rate}")
    if not 0 <= c.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {c.momentum}")
    if not 0 < c.delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {c.delta}")
    if c.clipping_norm <= 0:
        raise ValueError(f"clipping_norm must be > 0, got {c.clipping_norm}")
    if c.private:
        if c.noise_multiplier is None and c.target_epsilon is None:
            raise ValueError("a private mode needs --noise-multiplier or --target-epsilon")
        if c.noise_multiplier is not None and c.noise_multiplier < 0:
            raise ValueError(f"noise_multiplier σ must be >= 0, got {c.noise_multiplier}")
        if c.target_epsilon is not None and c.target_epsilon <= 0:
            raise ValueError(f"target_epsilon must be > 0, got {c.target_epsilon}")
    k_min = c.min_participants if c.min_participants is not None else c.hospitals
    if c.mode == "dopamine" and not 1 <= k_min <= c.hospitals:
        raise ValueError(f"min_participants must be in [1, hospitals={c.hospitals}], got {k_min}")
    if c.mode == "dopamine" and c.colluders >= k_min:
        raise ValueError(f"colluders ({c.colluders}) must be below min_participants ({k_min})")
    if c.noise_seed is not None and c.noise_seed < 0:
        raise ValueError(f"noise_seed must be >= 0, got {c.noise_seed}")
    if c.device not in ("cpu",) and not c.device.startswith("cuda"):
        raise ValueError(f"device must be cpu or cuda[:N], got {c.device!r}")
