"""The `model.pt` checkpoint: what a training run hands to export and the hub (docs/CONTRACTS.md)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from edge_client.fileio import atomic_write
from trainer.model import ARCH, DRSqueezeNet, build_model

FORMAT = "dopamine-checkpoint"
FORMAT_VERSION = 1
CLASS_NAMES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]
REQUIRED_KEYS = ("format", "format_version", "arch", "num_classes", "class_names", "state_dict",
                 "preprocess", "mode", "privacy")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or of another architecture; names the file."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def inner_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict of the bare model: strips Opacus' `_module.` prefix if the model is wrapped."""
    module = getattr(model, "_module", model)
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, preprocess: dict, mode: str,
                    privacy: dict, metrics: dict | None = None, config: dict | None = None,
                    round_kept: int = 0, class_names: list[str] | None = None) -> Path:
    state = inner_state_dict(model)
    checkpoint = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arch": ARCH,
        "num_classes": int(state["classifier.1.weight"].shape[0]),
        "class_names": list(class_names or CLASS_NAMES),
        "state_dict": state, "preprocess": dict(preprocess), "mode": mode, "privacy": dict(privacy),
        "metrics": metrics or {}, "config": config or {}, "round": int(round_kept),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    atomic_torch_save(checkpoint, path)
    return Path(path)


def load_checkpoint(path: str | Path) -> tuple[DRSqueezeNet, dict]:
    """Load and validate a checkpoint; returns the model (eval mode) and the checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a Dopamine checkpoint (no format={FORMAT!r} field)")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks fields {missing}")
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {checkpoint['format_version']} is newer than this "
                              f"code understands ({FORMAT_VERSION})")
    if checkpoint["arch"] != ARCH:
        raise CheckpointError(f"{path}: architecture {checkpoint['arch']!r} is not {ARCH!r}")
    model = build_model(int(checkpoint["num_classes"]))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {ARCH}: {exc}") from exc
    model.eval()
    return model, checkpoint
