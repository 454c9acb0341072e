"""Training augmentation on normalised NCHW torch batches: flips, small rotations, colour jitter.

A `torch.nn.Module` that is the identity in eval mode, so evaluation never sees augmented images.
It works in pixel space (un-normalise, transform, re-normalise) so a rotation pads with true black,
as the fundus border is.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edge_client.preprocess import PreprocessConfig


class Augment(nn.Module):
    """Random horizontal/vertical flips, rotation within +-`max_degrees`, brightness/contrast/saturation."""

    def __init__(self, cfg: PreprocessConfig, *, flip: bool = True, max_degrees: float = 15.0,
                 brightness: float = 0.1, contrast: float = 0.1, saturation: float = 0.1) -> None:
        super().__init__()
        for name, v in (("max_degrees", max_degrees), ("brightness", brightness), ("contrast", contrast),
                        ("saturation", saturation)):
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.flip, self.max_degrees = flip, max_degrees
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a normalised batch (N, 3, H, W); returns `x` itself in eval mode."""
        if not self.training:
            return x
        n = x.shape[0]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(n, generator=generator, device=x.device) * (hi - lo) + lo

        img = x * self.std + self.mean  # pixel space, 0-1
        if self.flip:
            hflip = torch.rand(n, generator=generator, device=x.device) < 0.5
            vflip = torch.rand(n, generator=generator, device=x.device) < 0.5
            img = torch.where(hflip[:, None, None, None], img.flip(3), img)
            img = torch.where(vflip[:, None, None, None], img.flip(2), img)
        if self.max_degrees > 0:
            theta = uniform(-self.max_degrees, self.max_degrees) * (math.pi / 180)
            cos, sin = torch.cos(theta), torch.sin(theta)
            zero = torch.zeros_like(cos)
            mat = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
            grid = F.affine_grid(mat, list(img.shape), align_corners=False)
            img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.brightness > 0:
            img = img * uniform(1 - self.brightness, 1 + self.brightness)[:, None, None, None]
        if self.contrast > 0:
            mean = img.mean(dim=(1, 2, 3), keepdim=True)
            img = (img - mean) * uniform(1 - self.contrast, 1 + self.contrast)[:, None, None, None] + mean
        if self.saturation > 0:
            gray = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
            img = (img - gray) * uniform(1 - self.saturation, 1 + self.saturation)[:, None, None, None] + gray
        return (img.clamp(0, 1) - self.mean) / self.std
