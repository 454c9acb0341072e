"""The DP-ready SqueezeNet: no in-place ReLU, no ReLU on the logits, features -> head exactly,
ImageNet bodies from a local file only."""
import pytest
import torch
from torch import nn
from torchvision.models import squeezenet1_1

from trainer.model import LogitsAndFeatures, build_model


def test_no_inplace_relu_and_no_relu_on_logits():
    model = build_model()
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.classifier.modules())
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(8, 3, 64, 64))
    assert (logits < 0).any(), "logits are never negative: a ReLU is still clamping them"


def test_features_through_the_head_give_the_logits():
    torch.manual_seed(0)
    model = build_model().eval()
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        logits, features = LogitsAndFeatures(model)(images)
        weight = model.classifier[1].weight.view(5, 512)
        manual = features @ weight.T + model.classifier[1].bias
    assert features.shape == (4, 512) and logits.shape == (4, 5)
    assert torch.allclose(logits, manual, atol=1e-5)
    assert torch.allclose(logits, model(images), atol=1e-6)


def test_imagenet_body_loads_from_a_local_file(tmp_path):
    imagenet = squeezenet1_1(weights=None)  # stands in for a downloaded ImageNet file (same keys)
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(imagenet.state_dict(), path)
    model = build_model(weights=path)
    assert torch.equal(model.features[0].weight, imagenet.features[0].weight)
    assert model.classifier[1].weight.shape == (5, 512, 1, 1)  # the 1000-class head is not loaded


def test_a_dopamine_checkpoint_warm_starts_body_and_head(tmp_path):
    from trainer.checkpoint import save_checkpoint
    torch.manual_seed(3)
    trained = build_model(dropout=0.0)
    path = save_checkpoint(tmp_path / "model.pt", trained, preprocess={"image_size": 32}, mode="central",
                           privacy={"epsilon": None})
    torch.manual_seed(4)                       # another seed: a fresh head would differ
    model = build_model(weights=path, dropout=0.0)
    assert torch.equal(model.classifier[1].weight, trained.classifier[1].weight)
    assert torch.equal(model.features[0].weight, trained.features[0].weight)


def test_bad_weights_files_are_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model(weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="junk.pth"):
        build_model(weights=junk)
    other = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="SqueezeNet"):
        build_model(weights=other)
