"""Fixtures of the export tests; the trained model and its one export come from tests/conftest.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_client.preprocess import PreprocessConfig
from export import calibration
from tests.helpers.models import SIZE


@pytest.fixture(scope="session")
def keys(export_keys) -> tuple[Path, Path]:
    """(private.key, public.key) that signed the session's bundle."""
    return export_keys


@pytest.fixture(scope="session")
def calibration_images() -> np.ndarray:
    """The calibration photos the export used (same seed and count)."""
    return calibration.synthetic_images(64, PreprocessConfig(image_size=SIZE), seed=calibration.CALIBRATION_SEED)[0]


@pytest.fixture(scope="session")
def test_images() -> tuple[np.ndarray, np.ndarray]:
    """The parity images the export used (same seed), for re-checking each artifact here."""
    return calibration.synthetic_images(200, PreprocessConfig(image_size=SIZE), seed=calibration.PARITY_SEED)


@pytest.fixture(scope="session")
def torch_reference(trained_checkpoint, test_images):
    from export.parity import torch_outputs
    from trainer.checkpoint import load_checkpoint
    from trainer.model import LogitsAndFeatures

    model, _ = load_checkpoint(trained_checkpoint)
    logits, features = torch_outputs(LogitsAndFeatures(model).eval(), test_images[0])
    head = (model.classifier[1].weight.detach().numpy().reshape(5, -1), model.classifier[1].bias.detach().numpy())
    return logits, features, head
