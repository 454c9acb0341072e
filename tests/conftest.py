"""What every package's tests share, built once per session, and the suite's time limits.

Heavy artifacts are session-scoped and built by the real tools: the synthetic data by
`trainer synth`, the plumbing ONNX model by `torch.onnx.export` (tests/helpers/bundles.py), and
ONE trained model (tests/helpers/models.py) exported ONCE by `python -m export all` (every format,
signed): the export, hub, device and app tests all use that bundle. Under pytest-xdist
(pytest.ini runs two workers, a file's tests on one worker) the trained model and its export are
built once per run, not once per worker (tests/helpers/shared.py).
Time limits come from markers, not from each file: a hung test fails after DEFAULT_TIMEOUT
seconds, a `slow` one (a training run, an export, a multi-process deployment) after SLOW_TIMEOUT.
Every test that uses the trained model is marked `slow` here, so `-m "not slow"` never trains it.
Setup counts: a test that first builds a session fixture gets its time too.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.bundles import cached_onnx, make_keys
from tests.helpers.shared import build_once

DEFAULT_TIMEOUT = 300
SLOW_TIMEOUT = 900


def pytest_configure(config) -> None:
    # pytest-xdist runs several workers (pytest.ini); torch's default of one thread per core in
    # each of them would oversubscribe the cores and spin-wait. Subprocesses inherit the variable.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        import torch
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# A test that needs the session's trained model trains it (or waits for it): it is `slow`.
NEEDS_TRAINING = {"trained_checkpoint", "export_run", "bundle"}


@pytest.hookimpl(tryfirst=True)   # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if NEEDS_TRAINING & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("timeout") is None:
            slow = item.get_closest_marker("slow") is not None
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT if slow else DEFAULT_TIMEOUT))
    _longest_first(items)


def _longest_first(items) -> None:
    """Order files so two xdist workers finish together (pytest.ini: --no-loadscope-reorder keeps
    this order): first one file that trains the session's model, so it is built while the other
    worker runs a deployment; then the other slow files, most slow tests first; then the rest of
    the files that use the model (built by then); then the quick files to fill the gaps."""
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def slow(tests) -> int:
        return sum(t.get_closest_marker("slow") is not None for t in tests)

    def trains(tests) -> bool:
        return any(NEEDS_TRAINING & set(getattr(t, "fixturenames", ())) for t in tests)

    first = next((name for name, tests in files.items() if trains(tests)), None)

    def group(name: str) -> tuple[int, int]:
        tests = files[name]
        if name == first:
            return 0, 0
        if trains(tests):
            return 2, -slow(tests)
        return (1, -slow(tests)) if slow(tests) else (3, 0)

    items[:] = [item for name in sorted(files, key=group) for item in files[name]]


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


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """The session's trained model as a trainer checkpoint (RUN/model.pt), trained once per run."""
    def build(root: Path) -> None:
        import torch

        torch.set_num_threads(1)   # the same model on any machine and worker count
        from edge_client.preprocess import PreprocessConfig
        from tests.helpers.models import PRIVACY, SIZE, TRAIN_IMAGES, WIDE, train_tiny
        from trainer.checkpoint import save_checkpoint
        from trainer.data.synth import generate_dataset

        data = generate_dataset(root / "synth", TRAIN_IMAGES, size=SIZE, seed=11, class_probs=(0.2,) * 5)
        model = train_tiny(data)
        with torch.no_grad():
            model.classifier[1].weight.mul_(WIDE)
            model.classifier[1].bias.mul_(WIDE)
        save_checkpoint(root / "model.pt", model, preprocess=PreprocessConfig(image_size=SIZE).to_dict(),
                        mode="dopamine", privacy=PRIVACY,
                        metrics={"val": {"accuracy": 0.41, "kappa": 0.22}, "test": {"accuracy": 0.4, "kappa": 0.2}},
                        config={"hospitals": 3, "rounds": 30}, round_kept=27)

    return build_once(tmp_path_factory, "trained", build) / "model.pt"


@pytest.fixture(scope="session")
def export_keys(tmp_path_factory) -> tuple[Path, Path]:
    """The publisher's key pair as `export keygen` writes it: (private.key, public.key)."""
    from export import signing
    folder = build_once(tmp_path_factory, "export-keys", signing.generate_keypair)
    return folder / "private.key", folder / "public.key"


@pytest.fixture(scope="session")
def export_run(tmp_path_factory, trained_checkpoint, export_keys) -> tuple[Path, str]:
    """The one export of the run: every format, 200 parity images, 2 timed runs, the default
    --min-agreement. Returns (DIST, everything it printed to the terminal, C++ lines included)."""
    def build(root: Path) -> None:
        from export import chatter, cli

        with chatter.to_log(root / "terminal.txt"):  # file descriptors 1 and 2, as a user's terminal sees them
            status = cli.main(["all", "--checkpoint", str(trained_checkpoint), "--out", str(root / "dist"),
                               "--key", str(export_keys[0]), "--formats", "onnx,tflite,tflite-fp32,coreml",
                               "--version", "3", "--latency-runs", "2", "--calibration-images", "64",
                               "--test-images", "200"])
        assert status == 0, (root / "terminal.txt").read_text()[-3000:]

    root = build_once(tmp_path_factory, "export", build)
    return root / "dist", (root / "terminal.txt").read_text()


@pytest.fixture(scope="session")
def bundle(export_run) -> Path:
    """DIST of the session's one export (model_version 3, signed with `export_keys`)."""
    return export_run[0]


def pytest_unconfigure(config) -> None:
    # JAX (imported by the TFLite converter) logs from an atexit hook after pytest has closed the
    # captured streams; the "--- Logging error ---" it prints then is noise, not a failure.
    import logging
    logging.raiseExceptions = False
