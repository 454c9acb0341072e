"""The SecAgg+ encoding: the public pre-scale keeps every coordinate inside Flower's clipping
range, and Flower's own quantization (run on real hospital shares) errs far below the noise."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from scipy import stats

from federation.config import RunConfig
from federation.secagg import (DEFAULT_CLIPPING_RANGE, DEFAULT_QUANTIZATION_RANGE, aggregate_error_bound,
                               batch_size_bound, gaussian_bound, prescale, quantization_noise_ratio)
from federation.task import load_hospital, released_delta, run_prescale
from trainer.dp.dopamine import hospital_shares, load_flat_weights, noise_share_std
from trainer.dp.noise import seeded_generator
from trainer.dp.per_sample import PerSampleClipper
from trainer.model import build_model

D = 723_013  # order of SqueezeNet 1.1's parameter count with 5 classes


def test_batch_bound_is_the_smallest_with_the_tail():
    b = batch_size_bound(300, sample_rate=0.034, tail=1e-12)
    assert stats.binom.sf(b, 300, 0.034) <= 1e-12 < stats.binom.sf(b - 1, 300, 0.034)
    assert batch_size_bound(5, sample_rate=1.0, tail=1e-9) == 5


def test_gaussian_bound_tail():
    t = gaussian_bound(2.0, tail=1e-15)
    assert 2 * stats.norm.sf(t / 2.0) == pytest.approx(1e-15, rel=1e-6)
    assert gaussian_bound(0.0, tail=1e-3) == 0.0


def test_paper_setting_quantization_far_below_noise_and_clip_delta_counted():
    """APTOS-like: 10 hospitals of ~293 patients, q = 0.03425, σ = 1.15, C = 2, 30001 rounds, δ = 1e-4,
    ε ≤ 8. Clipping is per hospital and non-linear, so it costs (1 + e^ε)·η in δ, not η."""
    share = noise_share_std(noise_multiplier=1.15, clipping_norm=2.0, min_participants=10)
    ps = prescale(clipping_norm=2.0, noise_share_std=share, max_patients=293, sample_rate=0.03425,
                  dimension=D, rounds=30001, hospitals=10, delta=1e-4, epsilon_bound=8.0)
    assert ps.clip_delta == pytest.approx(1e-6)
    assert (1 + math.exp(8.0)) * ps.clip_probability == pytest.approx(ps.clip_delta)
    assert ps.accountant_delta(1e-4) == pytest.approx(0.99e-4)
    # The union bound over every coordinate, hospital and round really is below η = δ/(100·(1 + e^ε)).
    p_batch = stats.binom.sf(ps.batch_bound, 293, 0.03425)
    p_coord = 2 * stats.norm.sf(ps.noise_bound / share)
    assert 30001 * 10 * (p_batch + D * p_coord) <= ps.clip_probability
    assert ps.scale * DEFAULT_CLIPPING_RANGE == pytest.approx(2.0 * ps.batch_bound + ps.noise_bound)
    assert quantization_noise_ratio(ps.quantization_step, 10, 1.15 * 2.0) < 1e-3


def test_overflow_refused():
    with pytest.raises(ValueError, match="overflow"):
        prescale(clipping_norm=1, noise_share_std=1, max_patients=10, sample_rate=0.5, dimension=10,
                 rounds=1, hospitals=1024, delta=1e-5, epsilon_bound=1.0)


def test_reported_delta_never_hides_the_clipping_cost():
    """At the ε the run was sized for, δ is the configured one; past it, the report says more."""
    run = RunConfig.from_flower({"target-epsilon": 2.0, "noise-multiplier": -1.0})
    ps = run_prescale(run, dimension=D, noise_multiplier=3.0)
    assert ps.epsilon_bound == 2.0
    assert released_delta(run, ps, 2.0) == pytest.approx(run.delta)
    assert released_delta(run, ps, 5.0) > run.delta


def _flower_secagg_sum(vectors: list[np.ndarray], clipping_range: float, target_range: int) -> np.ndarray:
    """What SecAggPlusWorkflow unmasks (masks cancel): Σ quantize(x_k), dequantized, offset, / n."""
    quantized = [quantize([v], clipping_range, target_range)[0].astype(np.int64) for v in vectors]
    total = np.sum(quantized, axis=0)
    out = dequantize([total], clipping_range, target_range)[0] - (len(vectors) - 1) * clipping_range
    return out / len(vectors)


@pytest.mark.parametrize("noise_multiplier", [1.0, 0.0])
def test_real_shares_nothing_clipped_and_sum_within_quantization(fed_data, noise_multiplier):
    run = RunConfig.from_flower({"total-patients": fed_data["total"], "max-patients": fed_data["max"],
                                 "noise-multiplier": noise_multiplier, "sample-rate": 0.5})
    torch.manual_seed(0)
    model = build_model(5, dropout=0.0)
    clipper = PerSampleClipper(model, clipping_norm=run.clipping_norm)
    weights = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    ps = run_prescale(run, dimension=weights.numel(), noise_multiplier=noise_multiplier)
    std = noise_share_std(noise_multiplier=noise_multiplier, clipping_norm=run.clipping_norm, min_participants=3)
    shares = []
    load_flat_weights(clipper.params, weights)
    for k, folder in enumerate(fed_data["hospitals"]):
        data = load_hospital(folder, image_size=run.image_size)
        shares.append(hospital_shares(clipper, [data], sample_rate=run.sample_rate, share_std=std,
                                      noise_generators=[seeded_generator(0, k + 1)]).total.double().numpy())
    scaled = [s / ps.scale for s in shares]
    assert max(np.abs(x).max() for x in scaled) < DEFAULT_CLIPPING_RANGE, "a coordinate would be clipped"
    exact = np.sum(shares, axis=0)
    got = _flower_secagg_sum(scaled, ps.clipping_range, DEFAULT_QUANTIZATION_RANGE) * 3 * ps.scale
    error = np.abs(got - exact)
    assert error.max() <= aggregate_error_bound(ps.quantization_step, 3)
    if noise_multiplier:
        # Rounding error std vs the DP noise std σC in the sum: far below.
        assert error.std() < 1e-3 * noise_multiplier * run.clipping_norm
        assert quantization_noise_ratio(ps.quantization_step, 3, noise_multiplier * run.clipping_norm) < 1e-3
    assert math.isfinite(error.mean()) and abs(error.mean()) < ps.quantization_step
