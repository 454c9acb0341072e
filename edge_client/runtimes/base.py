"""One interface over the device runtimes, and the int8 quantization glue they share.

A runtime loads one artifact file described by its manifest entry, and maps a normalised NCHW
float32 batch to float32 ``(logits, features)``. Layout changes (NCHW -> NHWC) and int8
quantize/dequantize follow the manifest entry (``real = scale * (q - zero_point)``).
"""
from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

__all__ = ["Runtime", "quantize", "dequantize", "prepare_input", "split_outputs"]

_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """float -> int8/uint8 with round-to-nearest and saturation."""
    lo, hi = _INT_RANGES[dtype]
    q = np.round(x / scale) + zero_point
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def prepare_input(batch: np.ndarray, spec: dict, fallback_quant: tuple[float, int] | None = None) -> np.ndarray:
    """Turn a (N,3,S,S) float32 batch into what the model's input tensor wants.

    Args:
        batch: normalised NCHW float32. spec: the manifest's ``inputs[0]``.
        fallback_quant: (scale, zero_point) read from the model file when the manifest has none.
    """
    x = np.asarray(batch, dtype=np.float32)
    if spec.get("layout", "NCHW").upper() == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    dtype = spec.get("dtype", "float32")
    if dtype in _INT_RANGES:
        scale, zp = spec.get("scale"), spec.get("zero_point")
        if scale is None and fallback_quant:
            scale, zp = fallback_quant
        if not scale:
            raise ValueError(f"input {spec.get('name')!r} is {dtype} but has no scale/zero_point")
        return quantize(x, float(scale), int(zp or 0), dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def split_outputs(arrays: list[np.ndarray], specs: list[dict], names: list[str] | None = None,
                  fallback_quant: list[tuple[float, int] | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Match raw outputs to ``logits`` and ``features`` (by name, else by last dimension) and dequantize.

    Returns:
        (logits (N, C) float32, features (N, F) float32).
    """
    by_name = {s.get("name"): s for s in specs}
    result: dict[str, np.ndarray] = {}
    for i, arr in enumerate(arrays):
        spec = by_name.get(names[i]) if names else None
        if spec is None:  # runtimes rename tensors (e.g. "StatefulPartitionedCall:0"): use shapes
            spec = next((s for s in specs if s.get("name") not in result
                         and s.get("shape") and s["shape"][-1] == arr.shape[-1]), None)
        if spec is None:
            continue
        if np.issubdtype(arr.dtype, np.integer):
            scale, zp = spec.get("scale"), spec.get("zero_point")
            if scale is None and fallback_quant and fallback_quant[i]:
                scale, zp = fallback_quant[i]
            arr = dequantize(arr, float(scale), int(zp or 0))
        result[spec.get("name")] = np.asarray(arr, dtype=np.float32).reshape(arr.shape[0], -1)
    if "logits" not in result:
        raise ValueError("model outputs do not include 'logits' as described by the manifest")
    features = result.get("features", np.zeros((result["logits"].shape[0], 0), np.float32))
    return result["logits"], features


class Runtime(abc.ABC):
    """A loaded model. Subclasses set ``name`` and ``artifact_runtime`` (the manifest's runtime)."""

    name: str = ""
    artifact_runtime: str = ""

    @classmethod
    @abc.abstractmethod
    def available(cls) -> bool:
        """True when this runtime can be imported on this device."""

    def __init__(self, path: str | Path, artifact: dict) -> None:
        self.path = Path(path)
        self.artifact = artifact
        self.input_spec = artifact["inputs"][0]
        self.output_specs = artifact.get("outputs", [])
        self._load()

    @abc.abstractmethod
    def _load(self) -> None:
        """Open the model file. Raise RuntimeUnavailable with a clear message on failure."""

    @abc.abstractmethod
    def _invoke(self, x: np.ndarray) -> tuple[list[np.ndarray], list[str] | None]:
        """Run one prepared input; return raw outputs and their names (None if meaningless)."""

    def _fallback_quant(self):
        return None, None

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Args: batch (N,3,S,S) float32 normalised. Returns: (logits, features) float32."""
        in_q, out_q = self._fallback_quant()
        shape = self.input_spec.get("shape") or [None]
        # Exported models have a static batch of 1: run images one by one then.
        step = 1 if shape[0] == 1 else len(batch)
        logits, feats = [], []
        for i in range(0, len(batch), step):
            x = prepare_input(batch[i:i + step], self.input_spec, in_q)
            outs, names = self._invoke(x)
            lg, ft = split_outputs(outs, self.output_specs, names, out_q)
            logits.append(lg)
            feats.append(ft)
        return np.concatenate(logits), np.concatenate(feats)
