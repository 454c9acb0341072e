"""The parts behind int8 parity: GPTQ rounding, the decision rules, the int8-activation TFLite path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from export import parity, weight_rounding

pytestmark = pytest.mark.timeout(300)


def _correlated_inputs(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """Smooth, correlated, non-negative inputs (as activations after a ReLU are): GPTQ's case."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(channels, channels, generator=g) / channels ** 0.5 + torch.eye(channels)
    x = torch.nn.functional.avg_pool2d(torch.randn(n, channels, size, size, generator=g), 3, 1, 1)
    return torch.relu(torch.einsum("dc,nchw->ndhw", mix, x))


@pytest.mark.parametrize("per_tensor", [False, True])
def test_gptq_weights_lie_on_the_grid_and_beat_rounding_to_nearest(per_tensor):
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(24, 32, 3, padding=1)
    with torch.no_grad():
        spread = torch.linspace(0.2, 1.0, 32)[:, None, None, None]  # channels of different ranges
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * spread)
    calibration = _correlated_inputs(64, 24, 8, seed=1)
    held_out = _correlated_inputs(64, 24, 8, seed=2)
    net = torch.nn.Sequential(conv).eval()
    rounded = weight_rounding.rounded_copy(net, calibration.numpy(), per_tensor={"0"} if per_tensor else set())
    w, q = conv.weight.detach(), rounded[0].weight.detach()
    assert weight_rounding.on_grid(q, per_tensor=per_tensor)
    peak = (lambda t: t.abs().max()) if per_tensor else (lambda t: t.reshape(32, -1).abs().amax(1))
    assert torch.allclose(peak(q), peak(w))  # converters re-derive exactly this scale
    scale = peak(w) / 127 if per_tensor else (peak(w) / 127)[:, None, None, None]
    nearest = torch.clamp(torch.round(w / scale), -127, 127) * scale

    def output_error(weight):
        return (torch.nn.functional.conv2d(held_out, weight, conv.bias, padding=1)
                - conv(held_out)).pow(2).mean().item()

    assert output_error(q) < 0.75 * output_error(nearest)  # measured 0.61x (per channel), 0.62x (per tensor)
    assert torch.equal(conv.weight, w)  # the original is untouched


def test_the_referable_decision_follows_the_rule():
    logits = np.array([[3.0, 2.9, 0.0, 0.0, 0.0],   # top-1 grade 0, P(>=2) small
                       [0.0, 0.1, 0.2, 0.0, 0.0],   # top-1 grade 2, P(>=2) about 0.58
                       [1.0, 0.0, 0.9, 0.8, 0.0]])  # top-1 grade 0, P(>=2) about 0.5
    assert parity.referable(logits).tolist() == [False, True, False]
    assert parity.referable(logits, threshold=0.5).tolist() == [False, True, True]
    assert parity.referable(logits, threshold=0.5, temperature=0.1).tolist() == [False, True, False]
    assert parity.referable(logits, refer_at_grade=3).tolist() == [False, False, False]
    assert parity.referral_rule({"refer_at_grade": 3, "threshold": 0.2}, {"temperature": 1.5}) == {
        "refer_at_grade": 3, "threshold": 0.2, "temperature": 1.5}
    assert "no P(referable) threshold" in parity.describe_rule(parity.referral_rule(None))


def test_the_selection_rule_asks_for_margin():
    """int8 activations are kept only if no fp32 decision flips with twice the measured error."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(700, 5)) * 3
    assert parity.keeps_decisions(ref.copy(), ref)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    error = np.zeros_like(ref)
    error[np.arange(700), ref.argmax(1)] = -0.45 * margin  # every top-1 loses 45 % of its margin
    assert (((ref + error).argmax(1)) == ref.argmax(1)).all()  # no decision flips as measured...
    assert parity.keeps_decisions(ref + error, ref)  # ...nor with twice the error
    error[0, ref[0].argmax()] = -0.6 * margin[0]  # one image within twice its error of a flip
    assert not parity.keeps_decisions(ref + error, ref)
    few = parity.MIN_SELECTION_IMAGES - 1  # no flip in too few images is no evidence
    assert parity.keeps_decisions(ref[:few + 1].copy(), ref[:few + 1])
    assert not parity.keeps_decisions(ref[:few].copy(), ref[:few])
    turned = parity.selection_images(np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4))
    assert turned.shape == (14, 3, 4, 4)
    assert len({t.tobytes() for t in turned}) == 14  # seven different views of each of the two images


def test_tflite_with_int8_activations(trained_checkpoint, calibration_images, test_images, torch_reference, tmp_path):
    """The path the bundle takes when int8 activations keep the decisions (not for this stress
    model): int8 input with its scale, float32 outputs from the float head, short names, small."""
    from export.diagnose_quant import compare_layers
    from export.tflite_export import TFLiteRunner, build_int8
    from trainer.checkpoint import load_checkpoint
    from trainer.model import LogitsAndFeatures

    model, _ = load_checkpoint(trained_checkpoint)
    path = build_int8(LogitsAndFeatures(model).eval(), 48, tmp_path / "model_int8.tflite", calibration_images,
                      activations=True)
    assert path.stat().st_size <= 800_000
    runner = TFLiteRunner(path)
    assert runner.int8_activations and runner.input["quantization"][0] > 0
    assert all(np.dtype(d["dtype"]) == np.float32 for d in runner.outputs.values())
    assert sum(len(t["name"]) for t in runner.interpreter.get_tensor_details()) < 4000
    logits, features = parity.runner_outputs(runner, test_images[0][:100])
    ref = torch_reference[0][:100]
    assert parity.agreement(logits, ref)[0] >= 0.9  # int8 activations flip this model's near-ties
    weight, bias = torch_reference[2]
    assert np.abs(features @ weight.T + bias - logits).max() <= 1e-3 * np.abs(logits).max()  # float head
    # the per-layer drift report covers the whole net, first conv to logits
    rows = compare_layers(model, path, test_images[0][:10])
    assert rows[0]["layer"] == "features.1" and rows[-1]["layer"] == "logits"
    assert len([r for r in rows if r["op"] == "CONV_2D"]) == 26
    assert rows[0]["rel_error"] < 0.05 and rows[-1]["rel_error"] < 0.3
