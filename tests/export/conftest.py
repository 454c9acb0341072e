"""One trained checkpoint and ONE export per test session, shared by every export test.

The model is trained briefly (48 px synthetic fundus photos, Adam) so that its logits differ
between images and int8 parity means something (a random-init model's top-1 is nearly constant).
It is the model known to stress int8 (issue 16): short-trained, so many decisions are near-ties
(before scaling, 1 % of its top-1 margins are under 0.015 in a logit range of 26, and noise of
half a gray level flips 1.3 % of its decisions), and its head is scaled by ``WIDE`` so its logits
span about 100 (an over-confident model: the same decisions, four times wider logits). The export runs with the default refusal threshold.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repo's `export` package, not this tests folder

from edge_client.preprocess import PreprocessConfig  # noqa: E402
from export import calibration, chatter, cli, signing  # noqa: E402
from trainer.checkpoint import save_checkpoint  # noqa: E402
from trainer.data.synth import generate_dataset  # noqa: E402
from trainer.model import build_model  # noqa: E402

SIZE = 48
TRAIN_IMAGES = 300
EPOCHS = 24
WIDE = 4.0  # head scale: logits four times wider than trained
PRIVACY = {"epsilon": 7.31, "delta": 1e-5, "accountant": "rdp",
           "privacy_model": "patient-level (add/remove one patient), honest-but-curious server, t=0",
           "noise_multiplier": 1.1, "sample_rate": 0.05, "steps": 120, "clipping_norm": 2.0}


def train_tiny(data_dir: Path, seed: int = 0) -> torch.nn.Module:
    """Train the whole net briefly (Adam) on synthetic photos: enough for image-dependent logits.

    Measured here: plain SGD (lr 0.02-0.1) or Adam at 1e-3 or more stayed at chance for 12+
    epochs (loss ln 5, one class for every image); Adam at 3e-4 leaves that plateau after ~9
    epochs. A linear probe on a random body is not enough: its classes hang on tiny feature
    differences that int8 erases (agreement ~0.3), unlike a trained body's.
    """
    torch.manual_seed(seed)
    x, y = calibration.load_folder(data_dir, PreprocessConfig(image_size=SIZE), need_labels=True)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = build_model(dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=generator).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained")
    data = generate_dataset(root / "synth", TRAIN_IMAGES, size=SIZE, seed=11, class_probs=(0.2,) * 5)
    model = train_tiny(data)
    with torch.no_grad():
        model.classifier[1].weight.mul_(WIDE)
        model.classifier[1].bias.mul_(WIDE)
    return save_checkpoint(root / "model.pt", model, preprocess=PreprocessConfig(image_size=SIZE).to_dict(),
                           mode="dopamine", privacy=PRIVACY,
                           metrics={"val": {"accuracy": 0.41, "kappa": 0.22}, "test": {"accuracy": 0.4, "kappa": 0.2}},
                           config={"hospitals": 3, "rounds": 30}, round_kept=27)


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    return signing.generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def export_run(tmp_path_factory, trained_checkpoint, keys) -> tuple[Path, str]:
    """The one export of the session: every format, 200 parity images, 2 timed runs, the default
    --min-agreement. Returns (DIST, everything it printed to the terminal, C++ lines included)."""
    root = tmp_path_factory.mktemp("export")
    dist, terminal = root / "dist", root / "terminal.txt"
    with chatter.to_log(terminal):  # file descriptors 1 and 2, as a user's terminal sees them
        status = cli.main(["all", "--checkpoint", str(trained_checkpoint), "--out", str(dist), "--key", str(keys[0]),
                           "--formats", "onnx,tflite,tflite-fp32,coreml", "--version", "3", "--latency-runs", "2",
                           "--calibration-images", "64", "--test-images", "200"])
    text = terminal.read_text()
    assert status == 0, text[-3000:]
    return dist, text


@pytest.fixture(scope="session")
def bundle(export_run) -> Path:
    return export_run[0]


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
