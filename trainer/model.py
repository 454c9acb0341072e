"""SqueezeNet 1.1 for diabetic-retinopathy grading, made trainable under DP-SGD.

Two changes to torchvision's SqueezeNet 1.1 (see docs/DESIGN.md):
  * no in-place ReLU: Opacus' backward hooks see a view modified in place otherwise;
  * no ReLU on the logits: under per-sample clipping it dies and training stays at chance.
Without that final ReLU the head (1x1 conv, then global average pool) is a linear map on the
pooled 512-vector, so we pool first and apply the 1x1 conv to the pooled vector: the same
function, and the pooled vector is the ``features`` output the device trains its head on.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import squeezenet1_1

ARCH = "squeezenet1_1-dr"
NUM_FEATURES = 512


class DRSqueezeNet(nn.Module):
    """SqueezeNet 1.1 body + linear head on the pooled 512-vector."""

    def __init__(self, num_classes: int = 5, dropout: float = 0.5) -> None:
        super().__init__()
        base = squeezenet1_1(weights=None, num_classes=num_classes)
        for module in base.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.features = base.features
        # Same key names as torchvision ("classifier.1.*") so ImageNet weights map onto the body.
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Conv2d(NUM_FEATURES, num_classes, 1))
        nn.init.normal_(self.classifier[1].weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.classifier[1].bias)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 512-vector per image, shape (N, 512)."""
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features: exactly W @ f + b (dropout is off in eval)."""
        return self.classifier(features[:, :, None, None]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class LogitsAndFeatures(nn.Module):
    """Export view of the model: two outputs, ``logits`` (N, C) and ``features`` (N, 512)."""

    def __init__(self, model: DRSqueezeNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(x)
        return self.model.head(features), features


def load_warm_start(model: DRSqueezeNet, weights_file: str | Path) -> list[str]:
    """Load local weights into `model` for a warm start. Nothing is downloaded.

    A Dopamine checkpoint (`model.pt`) loads WHOLE, body and head, so the run starts from that
    model's own predictions. A torchvision (ImageNet) state dict loads its body only: its
    1000-class head does not fit the 5 grades, so the head stays freshly initialised.

    Returns:
        The names of the keys that were loaded.
    Raises:
        FileNotFoundError: no such file. ValueError: unreadable, or keys that do not fit (names the file).
    """
    path = Path(weights_file)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise ValueError(f"{path}: not a readable torch state dict ({exc})") from exc
    if isinstance(state, dict) and state.get("format") == "dopamine-checkpoint":
        try:
            model.load_state_dict(state["state_dict"])
        except (KeyError, RuntimeError) as exc:
            raise ValueError(f"{path}: its weights do not fit this model ({exc})") from None
        return sorted(state["state_dict"])
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    body = {k: v for k, v in state.items() if k.startswith("features.")}
    if not body:
        raise ValueError(f"{path}: no 'features.*' keys: not a SqueezeNet 1.1 state dict")
    own = model.state_dict()
    for key, value in body.items():
        if key not in own or own[key].shape != value.shape:
            raise ValueError(f"{path}: key {key!r} does not fit SqueezeNet 1.1 (shape {tuple(value.shape)})")
    model.load_state_dict(body, strict=False)
    return sorted(body)


def build_model(num_classes: int = 5, *, weights: str | Path | None = None, dropout: float = 0.5) -> DRSqueezeNet:
    """Public factory: a fresh model, optionally warm-started from local weights (`load_warm_start`)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    model = DRSqueezeNet(num_classes=num_classes, dropout=dropout)
    if weights is not None:
        load_warm_start(model, weights)
    return model
