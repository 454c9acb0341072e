"""Warm starts compose: weights trained on private data carry their privacy history.

A torchvision/ImageNet state dict (no Dopamine checkpoint fields) is public: it adds nothing to ε.
A Dopamine checkpoint carries a privacy block. Starting a private run from it either composes its
history into the new run's ledger (the conservative reading: the same patients), or is refused,
unless the user declares that checkpoint's training data public (`--weights-public`, recorded in
the model card). A checkpoint trained without DP, or with seeded noise, has no history that
composes to a finite ε: it must be declared public or not used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.checkpoint import FORMAT as CHECKPOINT_FORMAT


@dataclass
class WarmStart:
    """What a run starts from, for the ledger and the card."""

    weights: str | None = None
    public: bool = True                 # True: adds nothing to ε
    declared_public: bool = False       # the user said so (--weights-public); the card says so too
    priors: list[list] = field(default_factory=lambda: [[]])
    note: str = "no pretraining: trained from random initialisation"

    def to_dict(self) -> dict:
        return {"weights": self.weights, "public": self.public, "declared_public": self.declared_public,
                "priors": [[list(h) for h in prior] for prior in self.priors], "note": self.note}


def checkpoint_histories(privacy: dict) -> list[list] | None:
    """The composed privacy histories a checkpoint's privacy block stands for; None if it has none.

    Checkpoints written before histories were recorded hold (σ, q, steps): one uniform history.
    """
    if privacy.get("histories"):
        return [[tuple(h) for h in history] for history in privacy["histories"]]
    sigma, q, steps = privacy.get("noise_multiplier"), privacy.get("sample_rate"), privacy.get("steps")
    if sigma and q and steps:
        return [[(float(sigma), float(q), int(steps))]]
    return None


def read_warm_start(weights: str | Path | None, *, declared_public: bool, private_run: bool) -> WarmStart:
    """Classify `weights` and return what the new run's ledger must compose.

    Args:
        weights: the --weights file, or None.
        declared_public: the user passed --weights-public.
        private_run: the new run claims ε (only then can a history matter).
    Raises:
        ValueError: naming the file, for private weights that cannot compose (trained without DP,
            seeded, or with no history) in a private run that did not declare them public.
    """
    if weights is None:
        return WarmStart()
    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"--weights {path}: file not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise ValueError(f"--weights {path}: not a readable torch file ({exc})") from None
    if not (isinstance(loaded, dict) and loaded.get("format") == CHECKPOINT_FORMAT):
        return WarmStart(str(path), note=f"initialised from the public state dict `{path.name}` (no privacy history)")
    if declared_public:
        return WarmStart(str(path), declared_public=True,
                         note=f"initialised from `{path.name}`, declared PUBLIC by the user (--weights-public): "
                              "its training data is taken to hold no patient of this run")
    privacy = loaded.get("privacy") or {}
    if not private_run:
        return WarmStart(str(path), public=False, note=f"initialised from the checkpoint `{path.name}`")
    histories = checkpoint_histories(privacy)
    if privacy.get("seeded") or privacy.get("test_build"):
        raise ValueError(f"--weights {path}: trained with seeded (test-only) noise, so it has no privacy "
                         "guarantee to compose; pass --weights-public only if its data was public")
    if privacy.get("epsilon") is None or histories is None:
        raise ValueError(f"--weights {path}: trained in mode {loaded.get('mode')!r} without differential privacy, "
                         "so its weights carry no guarantee for the patients it saw; pass --weights-public "
                         "if its training data was public (the model card will say so)")
    return WarmStart(str(path), public=False, priors=histories,
                     note=f"initialised from the private checkpoint `{path.name}` (epsilon {privacy['epsilon']}): "
                          "its privacy history is composed into this run's epsilon")
