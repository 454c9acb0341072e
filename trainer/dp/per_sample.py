"""Sum of per-patient clipped gradients, Σ_i clip(g_i, C), by one of several methods.

Dopamine needs only that sum, so methods that never materialise per-sample gradients (ghost
clipping) qualify. Every method returns the same quantity; tests check each against autograd on
single samples, and `benchmarks/bench_dp_step.py` times them (README: which is fastest here).

Methods:
  * ``functorch``     torch.func vmap(grad) over the batch: materialises (B, P) gradients.
  * ``opacus-hooks``  Opacus GradSampleModule, per-layer hooks: materialises grad_sample.
  * ``opacus-ew``     Opacus expanded weights.
  * ``ghost``         Opacus ghost clipping: per-sample norms without per-sample gradients, then a
                      second backward of the loss re-weighted by the clip factors. Only for one
                      image per patient (the norm of a patient's *summed* gradient needs the
                      gradients themselves).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

METHODS = ("functorch", "opacus-hooks", "opacus-ew", "ghost")
# Fastest overall in benchmarks/bench_dp_step.py (README): 1.23x the plain step at 224 px and
# 1.67x at 64 px on 2 CPU threads; fastest of the four on the GPU at every size.
DEFAULT_METHOD = "opacus-ew"


@dataclass
class ClippedSum:
    """What one clipped-sum computation yields. Nothing here but `total` may leave a hospital."""

    total: torch.Tensor      # (P,) Σ over patients of clip(Σ_{images of patient} g)
    num_patients: int        # realised sample size: stays inside the hospital
    loss_sum: float          # Σ of per-image losses: stays inside the hospital
    clipped_fraction: float  # share of patients whose gradient norm exceeded C


def _patient_index(patient_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    unique, index = torch.unique(patient_ids, return_inverse=True)
    return index, int(unique.numel())


def _clip_factors(norms: torch.Tensor, clipping_norm: float) -> torch.Tensor:
    # Same formula as Opacus (C / (norm + 1e-6), capped at 1): the clipped norm never exceeds C.
    return (clipping_norm / (norms + 1e-6)).clamp(max=1.0)


class PerSampleClipper:
    """Computes Σ clip(g_i) for a model; holds the (possibly Opacus-wrapped) module between calls.

    Args:
        model: the bare model (DRSqueezeNet). Its parameters are read and written in place.
        method: one of METHODS.
        clipping_norm: C, the per-patient L2 bound.
    """

    def __init__(self, model: nn.Module, *, method: str = DEFAULT_METHOD, clipping_norm: float) -> None:
        if method not in METHODS:
            raise ValueError(f"per-sample method must be one of {METHODS}, got {method!r}")
        if not clipping_norm > 0:
            raise ValueError(f"clipping_norm must be > 0, got {clipping_norm}")
        self.model = model
        self.method = method
        self.clipping_norm = float(clipping_norm)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._wrapped = None
        if method == "opacus-hooks":
            from opacus.grad_sample import GradSampleModule
            self._wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum")
        elif method == "opacus-ew":
            from opacus.grad_sample.gsm_exp_weights import GradSampleModuleExpandedWeights
            self._wrapped = GradSampleModuleExpandedWeights(model, batch_first=True, loss_reduction="sum")
        elif method == "ghost":
            from opacus.grad_sample import GradSampleModuleFastGradientClipping
            self._wrapped = GradSampleModuleFastGradientClipping(
                model, batch_first=True, loss_reduction="sum", max_grad_norm=self.clipping_norm,
                use_ghost_clipping=True)

    def clipped_sum(self, images: torch.Tensor, labels: torch.Tensor,
                    patient_ids: torch.Tensor | None = None) -> ClippedSum:
        """Σ over patients of the clipped sum of that patient's per-image gradients.

        Args:
            images: (B, 3, S, S) float batch; B may be 0 (an empty Poisson sample).
            labels: (B,) int64 grades.
            patient_ids: (B,) int64; images of one patient share an id. None: one image each.
        Returns:
            ClippedSum with `total` of shape (P,).
        """
        n_params = sum(p.numel() for p in self.params)
        if images.shape[0] == 0:
            zero = torch.zeros(n_params, dtype=self.params[0].dtype, device=self.params[0].device)
            return ClippedSum(zero, 0, 0.0, 0.0)
        device = self.params[0].device  # data stays on the CPU; only the batch moves
        images, labels = images.to(device), labels.to(device)
        if patient_ids is None:
            patient_ids = torch.arange(images.shape[0], device=device)
        patient_ids = patient_ids.to(device)
        index, num_patients = _patient_index(patient_ids)
        one_per_patient = num_patients == images.shape[0]
        self.model.train()
        if self.method == "ghost" and one_per_patient:
            return self._ghost(images, labels)
        per_sample, losses = self._materialised(images, labels)
        if not one_per_patient:
            grouped = per_sample.new_zeros((num_patients, per_sample.shape[1]))
            per_sample = grouped.index_add_(0, index, per_sample)
        norms = per_sample.norm(dim=1)
        factors = _clip_factors(norms, self.clipping_norm)
        total = factors @ per_sample
        return ClippedSum(total, num_patients, float(losses.sum()),
                          float((norms > self.clipping_norm).float().mean()))

    # -- methods ------------------------------------------------------------------------------
    def _materialised(self, images, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P) per-sample gradients and (B,) losses."""
        if self.method in ("functorch", "ghost"):  # ghost falls back here for multi-image patients
            return self._functorch(images, labels)
        for p in self.params:
            p.grad = None
            p.grad_sample = None
        losses = F.cross_entropy(self._wrapped(images), labels, reduction="none")
        losses.sum().backward()
        per_sample = torch.cat([p.grad_sample.reshape(images.shape[0], -1) for p in self.params], dim=1)
        for p in self.params:
            p.grad = None
            p.grad_sample = None
        return per_sample, losses.detach()

    def _functorch(self, images, labels) -> tuple[torch.Tensor, torch.Tensor]:
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        params = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}
        buffers = dict(self.model.named_buffers())

        def loss_one(params_, image, label):
            logits = functional_call(self.model, (params_, buffers), (image[None],))
            return F.cross_entropy(logits, label[None])

        # Dropout inside vmap needs randomness="different": each sample its own mask.
        grads = vmap(grad(loss_one), in_dims=(None, 0, 0), randomness="different")(params, images, labels)
        per_sample = torch.cat([grads[n].reshape(images.shape[0], -1) for n in names], dim=1)
        with torch.no_grad():
            losses = F.cross_entropy(self.model(images), labels, reduction="none")
        return per_sample, losses

    def _ghost(self, images, labels) -> ClippedSum:
        module = self._wrapped
        for p in self.params:
            p.grad = None
        losses = F.cross_entropy(module(images), labels, reduction="none")
        losses.sum().backward(retain_graph=True)  # pass 1: hooks record per-sample norms
        norms = module.get_norm_sample()
        factors = _clip_factors(norms, self.clipping_norm)
        for p in self.params:
            p.grad = None
        module.disable_hooks()
        try:
            (factors.detach() * losses).sum().backward()  # pass 2: Σ c_i g_i, no per-sample grads
        finally:
            module.enable_hooks()
        total = torch.cat([p.grad.reshape(-1) for p in self.params])
        for p in self.params:
            p.grad = None
        return ClippedSum(total, int(images.shape[0]), float(losses.detach().sum()),
                          float((norms > self.clipping_norm).float().mean()))
