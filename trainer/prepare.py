"""From a data folder to hospitals in memory: load, split by patient, partition, preprocess."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edge_client.preprocess import PreprocessConfig
from trainer.config import TrainConfig
from trainer.data.arrays import load_arrays
from trainer.data.datasets import load_dataset, split_dataset
from trainer.data.partition import partition, partition_summary
from trainer.dp.hospital import HospitalData


@dataclass
class PreparedData:
    hospitals: list[HospitalData]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    preprocess: PreprocessConfig
    summary: str                 # partition table (patients, grade histogram per hospital)
    train_patients: int


def _tensors(samples, cfg: PreprocessConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, labels, patients = load_arrays(samples, cfg)
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(patients)


def prepare(config: TrainConfig) -> PreparedData:
    """Load and split the data set and build the simulated hospitals.

    Raises:
        ValueError: bad data (every bad row listed), too few patients for the hospitals, or
            δ ≥ 1/N for a private mode.
    """
    dataset = load_dataset(config.data)
    splits = split_dataset(dataset.samples, split_file=config.split_file, val_fraction=config.val_fraction,
                           test_fraction=config.test_fraction, seed=config.seed or 0)
    train = splits["train"]
    if config.max_patients is not None:
        keep = sorted({s.patient_id for s in train})
        rng = np.random.default_rng(config.seed or 0)
        chosen = set(rng.permutation(keep)[:config.max_patients].tolist())
        train = [s for s in train if s.patient_id in chosen]
    n_patients = len({s.patient_id for s in train})
    if config.private and config.delta >= 1 / n_patients:
        raise ValueError(f"delta {config.delta} must be below 1/N = {1 / n_patients:.2e} "
                         f"(N = {n_patients} training patients): lower --delta")
    hospitals_count = 1 if config.mode in ("central", "central-dp") else config.hospitals
    if hospitals_count > n_patients:
        raise ValueError(f"{hospitals_count} hospitals but only {n_patients} training patients: "
                         "use fewer hospitals or more data")
    parts = partition(train, hospitals_count, scheme=config.partition, alpha=config.dirichlet_alpha,
                      seed=config.seed or 0)
    cfg = PreprocessConfig(image_size=config.image_size)
    hospitals = [HospitalData(*_tensors(part, cfg)) for part in parts]
    val_x, val_y, _ = _tensors(splits["val"], cfg)
    test_x, test_y, _ = _tensors(splits["test"], cfg)
    return PreparedData(hospitals, (val_x, val_y), (test_x, test_y), cfg, partition_summary(parts), n_patients)
