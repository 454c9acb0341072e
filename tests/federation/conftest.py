"""Shared fixtures: a tiny synthetic data set split over 3 hospitals (60 training patients, 32 px)
and throw-away certificates (scripts/make_certs.sh)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.federation import HOSPITALS
from federation.launch.split_data import split
from trainer.data.synth import generate_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fed_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fed-data")
    generate_dataset(root / "synth", 75, size=32, seed=0)
    info = split(root / "synth", root / "split", hospitals=HOSPITALS, eval_fraction=0.2, seed=0)
    info["root"] = root / "split"
    return info


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    subprocess.run([str(REPO / "scripts" / "make_certs.sh"), str(out), "5"], check=True, capture_output=True)
    return out


