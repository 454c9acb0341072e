"""Every per-sample method returns Σ clip(g_i) equal to autograd on single samples."""
import pytest
import torch
import torch.nn.functional as F

from trainer.dp.per_sample import METHODS, PerSampleClipper
from trainer.model import build_model


def _reference(model, images, labels, clip):
    grads = []
    for i in range(len(images)):
        model.zero_grad()
        F.cross_entropy(model(images[i:i + 1]), labels[i:i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    grads = torch.stack(grads)
    factors = (clip / (grads.norm(dim=1) + 1e-6)).clamp(max=1.0)
    model.zero_grad()
    return factors @ grads, grads.norm(dim=1)


@pytest.mark.parametrize("method", METHODS)
def test_clipped_sum_matches_autograd(method):
    torch.manual_seed(0)
    reference_model = build_model(dropout=0.0)
    images, labels = torch.randn(5, 3, 32, 32), torch.randint(0, 5, (5,))
    # C at the median norm: some samples are clipped, some are not.
    _, norms = _reference(reference_model, images, labels, 1.0)
    clip = float(norms.median())
    expected, _ = _reference(reference_model, images, labels, clip)
    model = build_model(dropout=0.0)
    model.load_state_dict(reference_model.state_dict())
    result = PerSampleClipper(model, method=method, clipping_norm=clip).clipped_sum(images, labels)
    assert result.num_patients == 5
    assert 0 < result.clipped_fraction < 1
    assert torch.allclose(result.total, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="functorch"):
        PerSampleClipper(build_model(), method="magic", clipping_norm=1.0)
