import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def tiny_fundus(tmp_path_factory):
    """120 synthetic fundus photos at 32 px, written once by the real `trainer synth` CLI."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    subprocess.run([sys.executable, "-m", "trainer", "synth", "--out", str(out), "--n", "120", "--size", "32",
                    "--seed", "5"], check=True, capture_output=True)
    return out
