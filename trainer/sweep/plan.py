"""What a sweep runs: one TrainConfig per (mode, target ε, seed) or (rounds T, seed).

The settings are fixed before any private run is looked at (README, "The paper's claim"):
every private mode gets the SAME sampling rate q, the same number of passes over the data
(`epochs`) and the demo preset's private learning rate, so that at a given ε they differ only in
where the noise goes. `central` and `fedavg` keep the demo preset's non-private settings.

  central-dp       expected batch q·N, `epochs` epochs (ceil(1/q) steps each)
  dopamine         Poisson rate q, epochs/q rounds
  fl-parallel-dp   each hospital's expected batch q·N_k (so q_k ≈ q), `epochs` rounds of one local
                   epoch: each hospital takes as many noised steps as central-dp, with the same σ
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from trainer.config import MODES, PRIVATE_MODES, TrainConfig, resolve

CEILINGS = ("central", "fedavg")
EPSILONS = (1.0, 2.0, 4.0, 8.0)
SEEDS = (0, 1, 2)
ROUNDS_GRID = (25, 50, 100, 200, 400)


@dataclass(frozen=True)
class SweepSettings:
    """Everything a sweep's runs share (public constants; recorded in OUT/sweep.json).

    Args:
        data: the hospitals' data folder.
        weights: the public body every run starts from (a model.pt or a state dict).
        hospitals: K.
        image_size: px.
        epochs: passes over the training data for every private mode.
        sample_rate: q for every private mode.
        delta, accountant: of every target ε.
        max_patients: use at most this many training patients (quick runs).
        ceiling_rounds: (central epochs, fedavg rounds); None: the demo preset's (15, 10).
        device, threads: where runs execute (not part of the fingerprint).
    """

    data: str
    weights: str
    hospitals: int = 10
    image_size: int = 32
    epochs: int = 5
    sample_rate: float = 0.1
    delta: float = 1e-5
    accountant: str = "rdp"
    max_patients: int | None = None
    ceiling_rounds: tuple[int, int] | None = None
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"--sample-rate must be in (0, 1], got {self.sample_rate}")
        if self.hospitals < 1:
            raise ValueError(f"--hospitals must be >= 1, got {self.hospitals}")

    def fingerprint(self) -> str:
        """A short hash of the settings that change results (device and threads excluded)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("device", "threads")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:16]


def parse_list(text: str, kind, name: str, *, allowed=None) -> tuple:
    """'1,2,4' -> (1, 2, 4); a bad item is a one-line ValueError naming the flag."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{name}: give at least one value")
    try:
        values = tuple(kind(t) for t in items)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a comma-separated list of {kind.__name__}") from None
    if allowed is not None and (bad := [v for v in values if v not in allowed]):
        raise ValueError(f"{name}: unknown {bad}; choose from {', '.join(map(str, allowed))}")
    return values


def train_patient_count(settings: SweepSettings, seed: int) -> int:
    """N: training patients of this seed's split, as `trainer.prepare` will build it (no images read)."""
    import numpy as np

    from trainer.data.datasets import load_dataset, split_dataset
    defaults = TrainConfig()
    samples = load_dataset(settings.data).samples
    train = split_dataset(samples, val_fraction=defaults.val_fraction, test_fraction=defaults.test_fraction,
                          seed=seed)["train"]
    patients = sorted({s.patient_id for s in train})
    if settings.max_patients is not None:
        patients = np.random.default_rng(seed).permutation(patients)[:settings.max_patients]
    return len(patients)


def run_config(settings: SweepSettings, mode: str, *, seed: int, out: str, train_patients: int,
               target_epsilon: float | None = None, rounds: int | None = None) -> TrainConfig:
    """The config of one run.

    Args:
        mode: one of trainer.config.MODES.
        seed: experiment seed (split, partition, augmentation); the DP noise stays CSPRNG.
        out: its run directory.
        train_patients: N for this seed (`train_patient_count`).
        target_epsilon: private modes only: σ is calibrated to spend exactly this.
        rounds: dopamine only: T, with q = epochs / T (the rounds curve); None: q = settings'.
    Raises:
        ValueError: a private mode without a target, a T below epochs, too few patients.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if (mode in PRIVATE_MODES) != (target_epsilon is not None):
        raise ValueError(f"{mode}: a target epsilon is needed exactly for the private modes {PRIVATE_MODES}")
    q, n, k = settings.sample_rate, train_patients, settings.hospitals
    overrides = dict(data=settings.data, out=out, weights=settings.weights, weights_public=True, seed=seed,
                     image_size=settings.image_size, hospitals=k, delta=settings.delta,
                     accountant=settings.accountant, max_patients=settings.max_patients,
                     device=settings.device, threads=settings.threads, target_epsilon=target_epsilon)
    if mode == "central":
        overrides["rounds"] = (settings.ceiling_rounds or (15, 10))[0]
    elif mode == "fedavg":
        overrides["rounds"] = (settings.ceiling_rounds or (15, 10))[1]
    elif mode == "central-dp":
        overrides.update(rounds=settings.epochs, batch_size=_at_least_one(q * n, "q·N"))
    elif mode == "fl-parallel-dp":
        overrides.update(rounds=settings.epochs, local_epochs=1, client_fraction=1.0,
                         local_batch_size=_at_least_one(q * n / k, "q·N/K"))
    else:  # dopamine
        if rounds is not None:
            if rounds < settings.epochs:
                raise ValueError(f"rounds T={rounds} must be >= epochs={settings.epochs} (q = epochs/T <= 1)")
            q = settings.epochs / rounds
        total = max(1, round(settings.epochs / q))
        # one evaluation per pass over the data: every private mode picks its kept round among as many
        overrides.update(sample_rate=q, rounds=total, eval_every=max(1, total // settings.epochs))
    return resolve(mode, preset="demo", overrides=overrides)


def _at_least_one(value: float, name: str) -> int:
    if round(value) < 1:
        raise ValueError(f"{name} = {value:.2f} rounds to 0 patients a step: raise --sample-rate or add data")
    return int(round(value))


def planned_runs(modes, epsilons, seeds, rounds_grid=None) -> list[dict]:
    """The run keys in execution order: ceilings first, then private modes by ε, seed inner.

    With `rounds_grid`, only dopamine at each T (the rounds curve), at each ε given.
    """
    if rounds_grid:
        return [{"mode": "dopamine", "target_epsilon": e, "seed": s, "rounds": t}
                for e in epsilons for t in rounds_grid for s in seeds]
    plan = [{"mode": m, "target_epsilon": None, "seed": s, "rounds": None}
            for m in CEILINGS if m in modes for s in seeds]
    plan += [{"mode": m, "target_epsilon": e, "seed": s, "rounds": None}
             for e in epsilons for m in PRIVATE_MODES if m in modes for s in seeds]
    return plan


def run_key(row: dict) -> tuple:
    return (row.get("kind", "run"), row["mode"], row.get("target_epsilon"), row["seed"], row.get("rounds"))


def run_dir_name(key: dict) -> str:
    parts = [key["mode"]]
    if key.get("target_epsilon") is not None:
        parts.append(f"eps{key['target_epsilon']:g}")
    if key.get("rounds") is not None:
        parts.append(f"T{key['rounds']}")
    parts.append(f"seed{key['seed']}")
    return "-".join(parts)
