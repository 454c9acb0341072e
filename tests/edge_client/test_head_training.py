"""numpy DP-SGD of the head: gradients equal torch autograd's, clipping bounds, noise scale."""
import numpy as np
import pytest

from edge_client.head_training import (CryptoRandom, DPConfig, HeadParams, SeededRandom, per_patient_clipped,
                                       per_sample_grads, noisy_step_gradient, train_head)


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    feats = np.abs(rng.normal(size=(n, 512))) * 0.3
    labels = rng.integers(0, 5, n)
    head = HeadParams(rng.normal(size=(5, 512)) * 0.05, rng.normal(size=5) * 0.1)
    return feats, labels, head


@pytest.mark.parametrize("with_offset", [False, True])
def test_per_sample_grads_match_torch_autograd(with_offset):
    torch = pytest.importorskip("torch")
    from trainer.model import build_model

    feats, labels, head = _data()
    model = build_model().double().eval()  # dropout off: the head is exactly W f + b
    conv = model.classifier[1]
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(head.weight).view_as(conv.weight))
        conv.bias.copy_(torch.from_numpy(head.bias))
    if with_offset:  # the device trains a change from zero on top of the model's own logits
        base = feats @ head.weight.T + head.bias
        ours = per_sample_grads(HeadParams(np.zeros((5, 512)), np.zeros(5)), feats, labels, base)
    else:
        ours = per_sample_grads(head, feats, labels)
    for i in range(len(labels)):
        conv.zero_grad()
        logits = model.head(torch.from_numpy(feats[i:i + 1]))
        torch.nn.functional.cross_entropy(logits, torch.tensor([int(labels[i])])).backward()
        ref = np.concatenate([conv.weight.grad.view(5, 512).numpy().ravel(), conv.bias.grad.numpy()])
        np.testing.assert_allclose(ours[i], ref, rtol=1e-9, atol=1e-12)


def test_per_patient_sum_is_clipped_and_one_patient_moves_the_sum_by_at_most_c():
    feats, labels, head = _data(n=10)
    grads = per_sample_grads(head, feats * 50, labels)  # large features: every sum needs clipping
    patients = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5])
    clipped = per_patient_clipped(grads, patients, 0.7)
    assert clipped.shape == (6, 5 * 512 + 5)
    assert np.all(np.linalg.norm(clipped, axis=1) <= 0.7 + 1e-9)
    # the sum of patient 2's photos is clipped, not each photo
    np.testing.assert_allclose(clipped[2] / np.linalg.norm(clipped[2]),
                               grads[3:6].sum(0) / np.linalg.norm(grads[3:6].sum(0)))
    # an outlier patient with a huge gradient changes the pre-noise sum by at most C
    outlier = np.vstack([grads, grads[:1] * 1e6])
    with_out = per_patient_clipped(outlier, np.append(patients, 6), 0.7).sum(0)
    assert np.linalg.norm(with_out - clipped.sum(0)) <= 0.7 + 1e-9


def test_noise_std_matches_sigma_c_over_expected_batch():
    """Zero gradients: the step gradient's std is σC/(qN), within chi-square bounds (n = 2565 * 40)."""
    sigma, c, expected = 1.3, 0.8, 12.0
    for rng in (SeededRandom(0), CryptoRandom()):
        draws = np.concatenate([noisy_step_gradient(np.zeros((7, 2565)), noise_multiplier=sigma, clipping_norm=c,
                                                    expected_batch=expected, rng=rng) for _ in range(40)])
        n, target = draws.size, sigma * c / expected
        ratio = (draws ** 2).sum() / (n * target ** 2)  # chi2_n / n: mean 1, sd sqrt(2/n) ~ 0.0044
        assert abs(ratio - 1) < 5 * np.sqrt(2 / n), ratio
        assert abs(draws.mean()) < 5 * target / np.sqrt(n)


def test_update_does_not_depend_on_the_realised_batch_size():
    """Without noise every sampled patient's clipped gradient is divided by the public constant divisor."""
    feats, labels, head = _data(n=20)
    cfg = DPConfig(noise_multiplier=0.0, sample_rate=0.5, steps=1, clipping_norm=1e6, learning_rate=1.0,
                   batch_divisor=7.0)
    rng = SeededRandom(3)
    chosen = np.flatnonzero(SeededRandom(3).random(20) < 0.5)  # the same draw train_head makes
    out = train_head(head, feats, labels, np.arange(20), config=cfg, rng=rng)
    expected = per_sample_grads(head, feats[chosen], labels[chosen]).sum(0) / 7.0
    np.testing.assert_allclose(head.weight - out.weight, expected[:2560].reshape(5, 512), atol=1e-12)
    assert len(chosen) != 7  # the realised batch differs from the divisor, and the divisor did not follow it


def test_training_learns_a_separable_task_and_is_seeded():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 512))
    labels = np.repeat(np.arange(5), 20)
    feats = 0.1 * (centres[labels] + 0.5 * rng.normal(size=(100, 512)))
    zero = HeadParams(np.zeros((5, 512)), np.zeros(5))
    cfg = DPConfig(noise_multiplier=1.0, sample_rate=0.3, steps=60, clipping_norm=1.0, learning_rate=0.5,
                   batch_divisor=30.0)
    a = train_head(zero, feats, labels, np.arange(100), config=cfg, rng=SeededRandom(7))
    b = train_head(zero, feats, labels, np.arange(100), config=cfg, rng=SeededRandom(7))
    np.testing.assert_array_equal(a.weight, b.weight)
    assert ((feats @ a.weight.T + a.bias).argmax(1) == labels).mean() > 0.6
    with pytest.raises(ValueError, match="labels"):
        train_head(zero, feats, labels + 5, np.arange(100), config=cfg, rng=SeededRandom(0))
