"""What every package's tests share, built once per session, and the suite's time limits.

Heavy artifacts are session-scoped and built by the real tools: the synthetic data by
`trainer synth`, the plumbing ONNX model by `torch.onnx.export` (tests/helpers/bundles.py).
Time limits come from markers, not from each file: a hung test fails after DEFAULT_TIMEOUT
seconds, a `slow` one (a training run, an export, a multi-process deployment) after SLOW_TIMEOUT.
Setup counts: a test that first builds a session fixture gets its time too.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.bundles import cached_onnx, make_keys

DEFAULT_TIMEOUT = 300
SLOW_TIMEOUT = 900


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            slow = item.get_closest_marker("slow") is not None
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT if slow else DEFAULT_TIMEOUT))


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    """A random-init fp32 ONNX export of the real model at 32 px (plumbing for hub and device tests)."""
    return cached_onnx(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """A publisher key pair (private.key / public.key) from a fixed seed: (SigningKey, public.key path)."""
    return make_keys(tmp_path_factory.mktemp("keys"), seed=b"\x01" * 32)


@pytest.fixture(scope="session")
def tiny_fundus(tmp_path_factory) -> Path:
    """120 synthetic fundus photos at 32 px, written once by the real `trainer synth` CLI."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    subprocess.run([sys.executable, "-m", "trainer", "synth", "--out", str(out), "--n", "120", "--size", "32",
                    "--seed", "5"], check=True, capture_output=True)
    return out
