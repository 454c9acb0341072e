"""Statistical tests of the Dopamine mechanism itself (not restatements of the code)."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from trainer.dp.dopamine import hospital_shares, noise_share_std
from trainer.dp.hospital import HospitalData
from trainer.dp.noise import csprng_normal, gaussian_noise, poisson_sample
from trainer.dp.per_sample import PerSampleClipper
from trainer.dp.server_optimizers import ServerOptimizer
from trainer.model import build_model


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(dropout=0.0)


def test_noise_shares_sum_to_dp_sgd_noise_within_chi_square_bounds():
    """K hospitals' shares with zero gradients: aggregate / (q·N) has std σC/(q·N)."""
    sigma, clip, k, expected_batch, dim = 1.3, 2.0, 5, 40.0, 20_000
    share = noise_share_std(noise_multiplier=sigma, clipping_norm=clip, min_participants=k)
    gens = [torch.Generator().manual_seed(100 + i) for i in range(k)]
    total = sum(gaussian_noise(dim, std=share, generator=g, dtype=torch.float64) for g in gens)
    update = total / expected_batch
    target = sigma * clip / expected_batch
    sample_var = float(update.var(unbiased=True))
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], dim - 1) / (dim - 1)
    assert lo * target ** 2 <= sample_var <= hi * target ** 2


def test_colluders_and_k_min_enlarge_each_share():
    base = noise_share_std(noise_multiplier=1.0, clipping_norm=1.0, min_participants=10)
    assert base == pytest.approx(1 / math.sqrt(10))
    # With t colluders, the K_min - t honest shares alone must still carry σC.
    honest = noise_share_std(noise_multiplier=1.0, clipping_norm=1.0, min_participants=10, colluders=3)
    assert 7 * honest ** 2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="colluders"):
        noise_share_std(noise_multiplier=1.0, clipping_norm=1.0, min_participants=3, colluders=3)


def test_csprng_normal_is_standard_normal():
    draws = csprng_normal(50_000, dtype=torch.float64).numpy()
    assert stats.kstest(draws, "norm").pvalue > 1e-4
    assert not np.array_equal(draws[:10], csprng_normal(10, dtype=torch.float64).numpy())


def test_poisson_sample_rate_and_empty_samples():
    gen = torch.Generator().manual_seed(3)
    sizes = [len(poisson_sample(200, sample_rate=0.05, generator=gen)) for _ in range(400)]
    assert np.mean(sizes) == pytest.approx(10, rel=0.1)
    # Poisson sampling: the size varies (fixed-size batches would break the accountant's assumption).
    assert np.std(sizes) > 2
    assert len(poisson_sample(200, sample_rate=0.05, generator=None)) <= 200


def test_one_outlier_moves_the_clipped_sum_by_at_most_c(tiny_model):
    """Sensitivity: adding one patient (even an adversarial one) moves Σ clip(g) by ≤ C."""
    torch.manual_seed(1)
    clip = 0.5
    clipper = PerSampleClipper(tiny_model, method="functorch", clipping_norm=clip)
    images, labels = torch.randn(6, 3, 32, 32), torch.randint(0, 5, (6,))
    base = clipper.clipped_sum(images, labels).total
    outlier = torch.randn(1, 3, 32, 32) * 50
    with_outlier = clipper.clipped_sum(torch.cat([images, outlier]), torch.cat([labels, torch.tensor([4])])).total
    assert float((with_outlier - base).norm()) <= clip * (1 + 1e-4)


def test_patient_with_two_images_is_clipped_as_one_unit(tiny_model):
    torch.manual_seed(2)
    clip = 0.1
    clipper = PerSampleClipper(tiny_model, method="functorch", clipping_norm=clip)
    images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    one_patient = clipper.clipped_sum(images, labels, torch.zeros(4, dtype=torch.long))
    assert one_patient.num_patients == 1
    assert float(one_patient.total.norm()) <= clip * (1 + 1e-4)


def test_server_divides_by_the_public_expected_batch_not_the_realised_one():
    """Every patient is the same image, so Σ clip(g) = n·clip(g) for a round that sampled n.
    Dividing by the public q·N makes the update n·clip(g)/(q·N): proportional to n. Dividing by
    the realised n would make every round's update the same, and would reveal n."""
    from trainer.config import TrainConfig
    from trainer.modes.dp_sgd import DopamineMode
    torch.manual_seed(0)
    image, label = torch.randn(1, 3, 32, 32), torch.tensor([2])
    hospitals = [HospitalData(image.repeat(20, 1, 1, 1), label.repeat(20), torch.arange(20)) for _ in range(2)]
    config = TrainConfig(mode="dopamine", hospitals=2, sample_rate=0.3, noise_multiplier=0.0, clipping_norm=0.5,
                         learning_rate=1.0, momentum=0.0, optimizer="sgd", augment=False, dropout=0.0, seed=1)
    mode = DopamineMode(model=build_model(dropout=0.0), hospitals=hospitals, config=config)
    start = mode.weights()
    one = mode.clipper.clipped_sum(image, label).total  # clip(g) of the single image at w_0
    realised = []
    for round_index in range(6):
        mode.set_weights(start)
        mode.optimizer_state = {}
        mode.run_round(round_index)
        step = start - mode.weights()  # = n · clip(g) / (q · N) with lr 1, no momentum, no noise
        n = float(step @ one) / float(one @ one) * mode.expected_batch
        assert n == pytest.approx(round(n), abs=1e-3)
        assert torch.allclose(step, round(n) * one / mode.expected_batch, atol=1e-6)
        realised.append(round(n))
    assert mode.expected_batch == pytest.approx(0.3 * 40)
    assert len(set(realised)) > 1, f"Poisson sampling should vary the sample size: {realised}"


def test_server_sgd_matches_torch_sgd_with_momentum():
    torch.manual_seed(4)
    param = torch.nn.Parameter(torch.randn(10))
    opt = torch.optim.SGD([param], lr=0.05, momentum=0.9)
    weights, state = param.detach().clone(), {}
    for _ in range(3):
        aggregate = torch.randn(10) * 7
        param.grad = aggregate / 7.0
        opt.step()
        weights, state = ServerOptimizer("sgd", learning_rate=0.05, momentum=0.9).step(
            weights, state, aggregate, expected_batch_size=7.0)
    assert torch.allclose(weights, param.detach(), atol=1e-6)


def test_server_adam_matches_torch_adam():
    torch.manual_seed(5)
    param = torch.nn.Parameter(torch.randn(10))
    opt = torch.optim.Adam([param], lr=0.01, betas=(0.9, 0.999))
    weights, state = param.detach().clone(), {}
    for _ in range(4):
        aggregate = torch.randn(10) * 3
        param.grad = aggregate / 3.0
        opt.step()
        weights, state = ServerOptimizer("adam", learning_rate=0.01, momentum=0.9).step(
            weights, state, aggregate, expected_batch_size=3.0)
    assert torch.allclose(weights, param.detach(), atol=1e-6)


def test_empty_sample_still_sends_noise(tiny_model):
    clipper = PerSampleClipper(tiny_model, method="functorch", clipping_norm=1.0)
    data = HospitalData(torch.randn(3, 3, 32, 32), torch.zeros(3, dtype=torch.long), torch.arange(3))
    weights = torch.nn.utils.parameters_to_vector(tiny_model.parameters()).detach()
    # q tiny: the sample is empty with overwhelming probability, yet noise of the right size is sent.
    share = hospital_shares(clipper, [data], sample_rate=1e-9, share_std=0.5, noise_generators=[None]).total
    assert share.shape == weights.shape
    assert float(share.std()) == pytest.approx(0.5, rel=0.02)


def test_k_hospitals_in_one_call_equal_the_sum_of_their_single_calls(tiny_model):
    """The simulator (K hospitals in one call) and Flower (one hospital each) send the same sum; the
    clipped sums are bit for bit the same (each hospital clips its own batch in both), which is what
    lets a deployment match the simulator to the quantization step."""
    clipper = PerSampleClipper(tiny_model, method="functorch", clipping_norm=0.7)
    torch.manual_seed(3)
    hospitals = [HospitalData(torch.randn(6, 3, 32, 32), torch.randint(0, 5, (6,)), torch.arange(6))
                 for _ in range(3)]
    gens = lambda: [torch.Generator().manual_seed(40 + k) for k in range(3)]  # noqa: E731
    together = hospital_shares(clipper, hospitals, sample_rate=0.5, share_std=0.3, noise_generators=gens()).total
    apart = sum(hospital_shares(clipper, [h], sample_rate=0.5, share_std=0.3, noise_generators=[g]).total
                for h, g in zip(hospitals, gens()))
    assert torch.allclose(together, apart, atol=1e-5)
    no_noise = lambda hs: hospital_shares(clipper, hs, sample_rate=1.0, share_std=0.0,  # noqa: E731
                                          noise_generators=[None] * len(hs)).total
    assert torch.equal(no_noise(hospitals), sum(no_noise([h]) for h in hospitals))
