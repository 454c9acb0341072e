import sys
from pathlib import Path

import pytest

# The repo root first (so `hub` is the package, not this folder), then tests/ for fixtures_bundle.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.append(str(Path(__file__).resolve().parents[1]))
from fixtures_bundle import cached_onnx, make_keys  # noqa: E402


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    return cached_onnx(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys"), seed=b"\x01" * 32)
