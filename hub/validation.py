"""Held-out validation at the hub: the current version and a candidate on the hub's own labelled set.

The set (``hub configure --validation-data DIR``, an APTOS/EyePACS/folders layout the trainer
reads) is the hub's, never a device's; its figures are shown to the operator before approval and
gate the automatic mode (a candidate whose accuracy drops below the current version's waits).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hub.registry import HubError

__all__ = ["validate"]

_KEYS = ("accuracy", "kappa", "referable_sensitivity", "referable_specificity", "n")


def _probs(model, x: np.ndarray) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(x), 128):
            out.append(torch.softmax(model(torch.from_numpy(x[start:start + 128])), dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def validate(data_dir: str | Path, preprocess: dict, models: dict) -> dict:
    """Metrics of each model on the held-out set.

    Args:
        data_dir: the labelled folder. preprocess: the models' PreprocessConfig dict.
        models: {"base": torch model, "candidate": torch model}.

    Returns:
        {"data": str, "base": {accuracy, kappa, referable_sensitivity, referable_specificity, n}, "candidate": {...}}

    Raises:
        HubError: the folder is missing or unreadable (names it and the problem).
    """
    from edge_client.preprocess import PreprocessConfig
    from trainer.data.arrays import load_arrays
    from trainer.data.datasets import DatasetError, load_dataset
    from trainer.metrics import evaluate

    try:
        dataset = load_dataset(Path(data_dir))
        x, y, _ = load_arrays(dataset.samples, PreprocessConfig.from_dict(preprocess))
    except (DatasetError, OSError, ValueError) as exc:
        raise HubError(f"{data_dir}: held-out validation set unusable ({str(exc).splitlines()[0]})") from None
    result = {"data": str(data_dir)}
    for name, model in models.items():
        metrics = evaluate(y, _probs(model.eval(), x))
        result[name] = {k: metrics[k] for k in _KEYS}
    return result
