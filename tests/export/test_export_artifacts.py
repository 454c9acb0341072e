"""Every artifact of the session's export runs in its runtime and agrees with torch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from export.mil_numpy import CoreMLRunner
from export.onnx_export import OnnxRunner
from export.parity import runner_outputs
from export.tflite_export import TFLiteRunner


pytestmark = pytest.mark.timeout(600)

RUNNERS = {"model_fp32.onnx": OnnxRunner, "model_int8.onnx": OnnxRunner, "model_int8.tflite": TFLiteRunner,
           "model_fp32.tflite": TFLiteRunner, "model_int8.mlpackage": CoreMLRunner}
INT8 = ["model_int8.onnx", "model_int8.tflite", "model_int8.mlpackage"]
FP32 = ["model_fp32.onnx", "model_fp32.tflite"]


@pytest.fixture(scope="module")
def outputs(bundle, test_images):
    """Each artifact run here, independently of the export's own report."""
    return {name: runner_outputs(cls(bundle / name), test_images[0]) for name, cls in RUNNERS.items()}


@pytest.mark.parametrize("name", list(RUNNERS))
def test_both_outputs_have_the_right_shapes(outputs, test_images, name):
    logits, features = outputs[name]
    assert logits.shape == (len(test_images[0]), 5)
    assert features.shape == (len(test_images[0]), 512)
    assert np.isfinite(logits).all() and np.isfinite(features).all()


@pytest.mark.parametrize("name", FP32)
def test_fp32_artifacts_match_torch(outputs, torch_reference, name):
    logits, features = outputs[name]
    assert np.abs(logits - torch_reference[0]).max() < 1e-3
    assert np.abs(features - torch_reference[1]).max() < 1e-3
    assert (logits.argmax(1) == torch_reference[0].argmax(1)).all()


def test_the_test_model_is_not_trivial(torch_reference):
    """Parity is only meaningful when the predictions differ between images."""
    predicted = np.bincount(torch_reference[0].argmax(1), minlength=5)
    assert (predicted > 0).sum() >= 3, predicted


@pytest.mark.parametrize("name", INT8)
def test_int8_artifacts_agree_with_torch(outputs, torch_reference, fixture_min_agreement, name):
    logits, _ = outputs[name]
    ref = torch_reference[0]
    agree = logits.argmax(1) == ref.argmax(1)
    assert agree.mean() >= fixture_min_agreement, f"{name}: top-1 agreement {agree.mean():.3f}"
    # int8 may flip near-ties of this weak model, never a clear decision
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    clear = margin > np.median(margin)  # the more decisive half of the images
    assert agree[clear].mean() >= 0.98, f"{name}: flipped {int((~agree[clear]).sum())} of {clear.sum()} clear decisions"
    spread = ref.max() - ref.min()
    assert np.abs(logits - ref).mean() < 0.05 * spread


def test_core_ml_weight_only_int8_is_closest(outputs, torch_reference):
    """Core ML keeps float activations, so its error is below the fully quantized models'."""
    errors = {n: np.abs(outputs[n][0] - torch_reference[0]).mean() for n in INT8}
    assert errors["model_int8.mlpackage"] < min(errors["model_int8.onnx"], errors["model_int8.tflite"])


@pytest.mark.parametrize("name", list(RUNNERS))
def test_features_reproduce_logits_through_the_head(outputs, torch_reference, bundle, name):
    logits, features = outputs[name]
    weight, bias = torch_reference[2]
    through_head = features @ weight.T + bias
    error = np.abs(through_head - logits)
    if name == "model_int8.tflite":  # both outputs are int8: a step of each, through the int8 head
        entry = next(a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]
                     if a["name"] == name)
        q = {o["name"]: (o["scale"], o["zero_point"]) for o in entry["outputs"]}
        (s_l, z_l), (s_f, _) = q["logits"], q["features"]
        # a logit outside the calibrated range saturates at the int8 limits: not a head mismatch
        saturated = (logits >= s_l * (127 - z_l) - 1e-4) | (logits <= s_l * (-128 - z_l) + 1e-4)
        assert saturated.mean() < 0.01
        tolerance = s_l + s_f * np.abs(weight).sum(1).max() / 4
        assert error[~saturated].max() <= tolerance
    else:  # fp32 artifacts, and int8 ones whose head runs in float (ONNX) or has int8 weights (Core ML)
        tolerance = 1e-3 if name in FP32 or name == "model_int8.onnx" else 0.02 * np.abs(logits).max()
        assert error.max() <= tolerance


def test_tflite_int8_has_int8_io_described_in_the_manifest(bundle):
    runner = TFLiteRunner(bundle / "model_int8.tflite")
    entry = next(a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]
                 if a["name"] == "model_int8.tflite")
    assert runner.input["dtype"] == np.int8
    tensor_in = entry["inputs"][0]
    assert tensor_in["dtype"] == "int8" and tensor_in["layout"] == "NCHW" and tensor_in["shape"] == [1, 3, 48, 48]
    assert (tensor_in["scale"], tensor_in["zero_point"]) == pytest.approx(runner.input["quantization"])
    for out in entry["outputs"]:
        assert out["dtype"] == "int8"
        assert (out["scale"], out["zero_point"]) == pytest.approx(runner.outputs[out["name"]]["quantization"])


def test_core_ml_spec_reloads_with_metadata_and_int8_weights(bundle):
    from export.coreml_export import describe

    info = describe(bundle / "model_int8.mlpackage")
    assert info["spec_type"] == "mlProgram"
    assert [t["name"] for t in info["inputs"]] == ["input"]
    assert {t["name"]: t["shape"] for t in info["outputs"]} == {"logits": [1, 5], "features": [1, 512]}
    assert info["ops"]["constexpr_affine_dequantize"] == info["ops"]["conv"]  # every conv weight is int8
    meta = info["metadata"]
    for key in ("author", "license", "description", "version", "epsilon", "delta", "accountant", "class_labels"):
        assert meta[key], key
    assert meta["version"] == "3" and float(meta["epsilon"]) == pytest.approx(7.31)
    assert json.loads(meta["class_labels"])[4] == "Proliferative DR"
    assert info["size"] < 1_000_000


@pytest.mark.timeout(300)
def test_numpy_mil_evaluator_is_exact_on_fp32_weights(trained_checkpoint, test_images, torch_reference, tmp_path):
    """The evaluator itself adds no error: an fp32-weight package matches torch to float precision."""
    from export.coreml_export import export_mlpackage
    from trainer.checkpoint import load_checkpoint
    from trainer.model import LogitsAndFeatures

    model, _ = load_checkpoint(trained_checkpoint)
    package = export_mlpackage(LogitsAndFeatures(model).eval(), 48, tmp_path / "fp32.mlpackage", metadata={},
                               class_names=["a", "b", "c", "d", "e"], int8=False)
    logits, features = runner_outputs(CoreMLRunner(package), test_images[0][:20])
    assert np.abs(logits - torch_reference[0][:20]).max() < 1e-3
    assert np.abs(features - torch_reference[1][:20]).max() < 1e-3


def test_core_ml_zip_is_deterministic_and_holds_the_package(bundle, tmp_path):
    import zipfile

    from export.coreml_export import zip_package
    from edge_client.fileio import sha256_file

    again = zip_package(bundle / "model_int8.mlpackage", tmp_path / "again.zip")
    assert sha256_file(again) == sha256_file(bundle / "model_int8.mlpackage.zip")
    with zipfile.ZipFile(bundle / "model_int8.mlpackage.zip") as archive:
        names = archive.namelist()
        assert names == sorted(names)
        for name in names:
            assert archive.read(name) == (bundle / name).read_bytes()


def test_onnx_artifacts_are_single_files(bundle):
    import onnx

    assert not list(bundle.glob("*.data"))
    for name in ("model_fp32.onnx", "model_int8.onnx"):
        model = onnx.load(str(bundle / name), load_external_data=False)
        assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    ops = {n.op_type for n in onnx.load(str(bundle / "model_int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
