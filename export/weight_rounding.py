"""int8 weights that keep the model's outputs: GPTQ rounding onto the grid every converter uses.

Every int8 artifact stores each conv weight as ``q * scale`` with ``q`` in [-127, 127] and a
symmetric scale per output channel (or one per tensor). Rounding each weight to the nearest step
(what the converters do) ignores how the errors add up in the layer's output. GPTQ (Frantar et
al., 2022) rounds one input column at a time and moves the not-yet-rounded weights to cancel the
output error, using the second moment ``H = E[x x^T]`` of the layer's inputs on calibration
images. Measured here (weights only, 1000 parity images): top-1 flips 28 -> 4 on a short-trained
48 px model, 14 -> 2 on one with a wide logit range.

The rounded weights lie exactly on the grid the converters derive again (``max|w| / 127``: each
channel's largest weight stays at +-127 steps), so ONNX Runtime, litert-torch and coremltools
store exactly these values. The fp32 model is never changed: callers get a rounded copy.
"""
from __future__ import annotations

import copy
import hashlib

import numpy as np
import torch
import torch.nn.functional as F

QMAX = 127          # symmetric int8 weights use [-127, 127] in all three converters
DAMPING = 0.01      # share of mean(diag H) added to H's diagonal (GPTQ's default)
MAX_COLUMNS = 1024  # input positions sampled per image and layer for H (early layers have ~12 k)


def convs(module: torch.nn.Module) -> dict[str, torch.nn.Conv2d]:
    """The Conv2d layers of a model or export view, by their ``named_modules`` name."""
    return {name: m for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)}


def _second_moments(module: torch.nn.Module, layers: dict[str, torch.nn.Conv2d], images: np.ndarray,
                    *, batch: int = 16) -> dict[str, torch.Tensor]:
    """``E[x x^T]`` of each layer's unfolded input patches over the images (float64, d x d)."""
    sums: dict[str, torch.Tensor] = {}
    counts = dict.fromkeys(layers, 0)

    def hook(name):
        def record(conv, inputs, _out):
            x = inputs[0]
            if x.dim() == 2:  # the head reads the pooled vector
                x = x[:, :, None, None]
            cols = F.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride)  # (N, d, L)
            step = max(1, cols.shape[2] // MAX_COLUMNS)  # a regular subsample keeps the statistics
            cols = cols[:, :, ::step].permute(1, 0, 2).reshape(cols.shape[1], -1)
            product = (cols @ cols.T).double()
            sums[name] = product if name not in sums else sums[name] + product
            counts[name] += cols.shape[1]
        return record

    hooks = [layer.register_forward_hook(hook(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                module(torch.from_numpy(np.ascontiguousarray(images[start:start + batch], dtype=np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return {name: sums[name] / counts[name] for name in layers}


def grid_scale(weight: torch.Tensor, *, per_tensor: bool = False) -> torch.Tensor:
    """The int8 step of each row of a (out, d) weight matrix: ``max|w| / 127``, the converters' own."""
    peak = weight.abs().max().expand(len(weight)) if per_tensor else weight.abs().amax(1)
    return peak.clamp_min(1e-12) / QMAX


def gptq_round(weight: torch.Tensor, hessian: torch.Tensor, *, per_tensor: bool = False) -> torch.Tensor:
    """Round a (out, d) weight matrix onto the symmetric int8 grid, compensating output error.

    Args:
        weight: float weights, one row per output channel.
        hessian: ``E[x x^T]`` (d x d) of the layer's inputs.
        per_tensor: one scale for the whole tensor instead of one per row.

    Returns:
        float32 (out, d) weights equal to ``q * scale`` with integer ``q`` in [-127, 127]; each
        row's (or the tensor's) largest magnitude is exactly ``127 * scale``.
    """
    w = weight.detach().double().clone()
    rows, cols = w.shape
    scale = grid_scale(w, per_tensor=per_tensor)
    h = hessian.clone()
    dead = torch.diag(h) == 0  # inputs that are always 0 carry no information: round them to 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = torch.argsort(torch.diag(h), descending=True)  # most active inputs first (act-order)
    w, h = w[:, order], h[order][:, order]
    h += DAMPING * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=h.dtype)
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i in range(cols):
        q[:, i] = torch.clamp(torch.round(w[:, i] / scale), -QMAX, QMAX) * scale
        error = (w[:, i] - q[:, i]) / inverse[i, i]
        w[:, i + 1:] -= error[:, None] * inverse[i, i + 1:][None, :]
    q = q[:, torch.argsort(order)]
    # Pin the peak (per row, or the tensor's) at +-127 steps so a converter recomputes this scale.
    original = weight.detach().double()
    if per_tensor:
        flat = int(original.abs().argmax())
        q.view(-1)[flat] = torch.sign(original.view(-1)[flat]) * QMAX * scale[0]
    else:
        peak_at = original.abs().argmax(1)
        signs = torch.sign(original[torch.arange(rows), peak_at])
        q[torch.arange(rows), peak_at] = torch.where(signs == 0, 1.0, signs) * QMAX * scale
    return q.float()


_cache: dict = {}  # the last (weights, images) -> second moments: one export rounds 3-4 times


def _moments_for(module: torch.nn.Module, images: np.ndarray) -> list[torch.Tensor]:
    """Second moments of every conv's input, in ``convs`` order; computed once per weights and images.

    ONNX, TFLite and Core ML each round the same weights on the same calibration images (through
    different wrappers, so under different layer names); collecting the moments is most of the
    cost (about 30 s at 224 px on a busy core), the rounding itself a few seconds.
    """
    layers = convs(module)
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    for conv in layers.values():
        digest.update(conv.weight.detach().numpy().tobytes())
        digest.update(b"|" if conv.bias is None else conv.bias.detach().numpy().tobytes())
    key = digest.hexdigest()
    if key not in _cache:
        moments = _second_moments(module, layers, images)
        _cache.clear()
        _cache[key] = [moments[name] for name in layers]
    return _cache[key]


def rounded_copy(module: torch.nn.Module, images: np.ndarray, *, per_tensor: set[str] = frozenset(),
                 skip: set[str] = frozenset()) -> torch.nn.Module:
    """A copy of ``module`` whose conv weights are GPTQ-rounded onto the int8 grid.

    Args:
        module: the fp32 model or export view (not modified).
        images: float32 (N, 3, S, S) calibration images (not the parity images). Few images
            leave H rank-deficient; the damping keeps GPTQ stable (measured down to 8 photos).
        per_tensor: names of convs to round on one scale per tensor (the rest: per channel).
        skip: names of convs left in float (e.g. a head the artifact keeps in float32).

    Returns:
        The rounded copy, in eval mode.
    """
    rounded = copy.deepcopy(module).eval()
    moments = _moments_for(rounded, images)  # all from fp32 activations, one pass
    with torch.no_grad():
        for (name, conv), moment in zip(convs(rounded).items(), moments):
            if name in skip:
                continue
            matrix = conv.weight.reshape(conv.weight.shape[0], -1)
            new = gptq_round(matrix, moment, per_tensor=name in per_tensor)
            conv.weight.copy_(new.reshape(conv.weight.shape))
    return rounded


def on_grid(weight: torch.Tensor | np.ndarray, *, per_tensor: bool = False, atol: float = 1e-4) -> bool:
    """True when every weight is an integer number of steps (``max|w| / 127``) within ``atol`` steps."""
    w = torch.as_tensor(weight).double().reshape(len(weight), -1)
    steps = w / grid_scale(w, per_tensor=per_tensor)[:, None]
    return bool((steps - steps.round()).abs().max() <= atol)
