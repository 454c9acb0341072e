"""Photo gate, model side: flag a photo whose 512-d features are far from PUBLIC fundus photos.

The manifest's "ood" block holds per-feature means and scales of the model's pooled features on
public photos (synthetic fundus photos from ``trainer.data.synth`` by default: no patient's data,
so no privacy cost) and a distance threshold chosen at export so that about `false_flag_target`
of other public fundus photos exceed it. Distance: the root mean square of the standardised
feature differences, sqrt(mean_j ((f_j - mean_j) / scale_j) ** 2).

A flagged photo is refused with reason "out_of_distribution": "this does not look like the photos
the model was trained on". It is a coarse check: what it catches depends on the model's features
(rates per source: benchmarks/bench_gate.py).
"""
from __future__ import annotations

import math

import numpy as np

from edge_client.errors import PhotoQualityError

__all__ = ["FeatureStats", "ood_distance", "check_features", "stats_from_manifest"]

HINT = ("this does not look like the photos the model was trained on: check that it is a colour fundus "
        "photo of a patient's eye; if it is, do not rely on the model for this patient: refer")


class FeatureStats:
    """Per-feature mean and scale, and the distance threshold (from a manifest's "ood" block)."""

    def __init__(self, mean, scale, threshold: float) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.threshold = float(threshold)

    @classmethod
    def from_block(cls, block: dict, features: int | None = None) -> "FeatureStats":
        """Check and read an "ood" block.

        Args:
            block: {"mean": [F floats], "scale": [F positive floats], "threshold": float > 0, ...}.
            features: the expected F, when known.

        Raises:
            ValueError: naming the bad field.
        """
        if not isinstance(block, dict):
            raise ValueError("ood must be an object")
        for key in ("mean", "scale", "threshold"):
            if key not in block:
                raise ValueError(f"ood.{key} is missing")
        mean, scale = block["mean"], block["scale"]
        if not isinstance(mean, list) or not isinstance(scale, list) or not mean or len(mean) != len(scale):
            raise ValueError("ood.mean and ood.scale must be lists of the same, non-zero length")
        if features is not None and len(mean) != features:
            raise ValueError(f"ood.mean has {len(mean)} values, the model has {features} features")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in mean + scale):
            raise ValueError("ood.mean and ood.scale must hold finite numbers")
        if min(scale) <= 0:
            raise ValueError("ood.scale must be > 0 everywhere")
        t = block["threshold"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"ood.threshold must be a positive number, got {t!r}")
        return cls(mean, scale, t)

    def distance(self, features) -> np.ndarray | float:
        """RMS standardised distance of (F,) or (N, F) features; a float for one vector."""
        f = np.asarray(features, dtype=np.float64)
        if f.shape[-1] != self.mean.size:
            raise ValueError(f"features have {f.shape[-1]} values, the statistics {self.mean.size}")
        d = np.sqrt((((f - self.mean) / self.scale) ** 2).mean(axis=-1))
        return float(d) if d.ndim == 0 else d


def stats_from_manifest(manifest: dict) -> FeatureStats | None:
    """The manifest's feature statistics, or None when it carries none (no model-side check)."""
    block = manifest.get("ood")
    return None if not block else FeatureStats.from_block(block)


def ood_distance(features, stats: FeatureStats) -> float:
    """Distance of one photo's (F,) or (1, F) features from the public statistics."""
    return float(stats.distance(np.asarray(features, dtype=np.float64).reshape(-1)))


def check_features(features, stats: FeatureStats | None, measures: dict | None = None) -> float | None:
    """Refuse a photo whose features are beyond the threshold.

    Args:
        features: the photo's (F,) or (1, F) features. stats: None skips the check.
        measures: the image gate's measures, carried into the error.

    Returns:
        The distance, or None without statistics.

    Raises:
        PhotoQualityError: reason "out_of_distribution", with the distance in .measures.
    """
    if stats is None:
        return None
    d = ood_distance(features, stats)
    if not d <= stats.threshold:  # NaN features are out of distribution too
        raise PhotoQualityError("out_of_distribution", f"{HINT} (feature distance {d:.2f} > {stats.threshold:.2f})",
                                {**(measures or {}), "feature_distance": round(d, 4),
                                 "feature_threshold": round(stats.threshold, 4)})
    return d
