"""The test session's one trained model: how it is made (tests/conftest.py builds it once).

Trained briefly (48 px synthetic fundus photos, Adam) so that its logits differ between images and
int8 parity means something (a random-init model's top-1 is nearly constant). It is the model known
to stress int8 (issue 16): short-trained, so many decisions are near-ties (before scaling, 1 % of
its top-1 margins are under 0.015 in a logit range of 26, and noise of half a gray level flips
1.3 % of its decisions), and its head is scaled by ``WIDE`` so its logits span about 100 (an
over-confident model: the same decisions, four times wider logits). Export, hub, device and app
tests all use its one export.
"""
from __future__ import annotations

from pathlib import Path

import torch

from edge_client.preprocess import PreprocessConfig
from export import calibration
from trainer.model import build_model

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
