"""Runtime glue (int8 quantization, layouts, output matching, selection) and the device history."""
import numpy as np
import pytest
from tests.helpers.bundles import HubProcess, init_hub, run_cli, write_bundle
from tests.helpers.photos import fundus_photos, png_bytes

from edge_client.api import EdgeClient
from edge_client.errors import ModelNotInstalled, NoCompatibleArtifact
from edge_client.runtimes import LiteRTRuntime, OnnxRuntime, select_runtime
from edge_client.runtimes.base import dequantize, prepare_input, quantize, split_outputs



def test_int8_glue_round_trips_and_transposes():
    x = np.random.default_rng(0).normal(size=(1, 3, 4, 4)).astype(np.float32)
    spec = {"layout": "NHWC", "dtype": "int8", "scale": 0.02, "zero_point": -3}
    q = prepare_input(x, spec)
    assert q.dtype == np.int8 and q.shape == (1, 4, 4, 3)
    back = dequantize(q, 0.02, -3).transpose(0, 3, 1, 2)
    inside = np.abs(x) < 2.4  # values inside the int8 range round-trip within half a step
    assert np.all(np.abs(back - x)[inside] <= 0.01 + 1e-6)
    assert quantize(np.array([100.0]), 0.02, 0, "int8")[0] == 127  # saturates
    specs = [{"name": "logits", "shape": [1, 5], "scale": 0.1, "zero_point": 3},
             {"name": "features", "shape": [1, 512], "scale": 0.05, "zero_point": -128}]
    feats = np.full((1, 512), -128, np.int8)
    logits = np.array([[3, 13, 3, 3, 3]], np.int8)
    lg, ft = split_outputs([feats, logits], specs, names=["StatefulPartitionedCall:0", "StatefulPartitionedCall:1"])
    assert np.allclose(lg, [[0, 1, 0, 0, 0]]) and np.allclose(ft, 0)


def test_select_runtime_prefers_litert_int8_then_onnx():
    arts = [{"name": "m.onnx", "runtime": "onnxruntime", "precision": "int8"},
            {"name": "f.tflite", "runtime": "litert", "precision": "fp32"},
            {"name": "q.tflite", "runtime": "litert", "precision": "int8"},
            {"name": "m.mlpackage.zip", "runtime": "coreml", "precision": "int8"}]
    assert select_runtime(arts, [LiteRTRuntime, OnnxRuntime]) == (LiteRTRuntime, arts[2])
    assert select_runtime(arts, [OnnxRuntime]) == (OnnxRuntime, arts[0])
    with pytest.raises(NoCompatibleArtifact, match="coreml"):
        select_runtime(arts[3:], [LiteRTRuntime, OnnxRuntime])


def test_history_delete_keep_photo_and_no_model(tmp_path, keys, onnx_model):
    client = EdgeClient(tmp_path / "phone")
    photo = png_bytes(fundus_photos(1, size=96, seed=2)[0])
    with pytest.raises(ModelNotInstalled, match="run sync"):
        client.diagnose(photo)
    root = tmp_path / "hub"
    init_hub(root, keys[1])
    write_bundle(tmp_path / "d1", version=1, model_file=onnx_model, key=keys[0])
    assert run_cli("hub", "publish", tmp_path / "d1", "--root", root).returncode == 0
    with HubProcess(root) as hub:
        client.sync(hub.url, public_key=keys[1])
    a = client.diagnose(photo)
    b = client.diagnose(photo, keep_photo=True)
    entries = client.history()
    assert [e.id for e in entries] == [b.history_id, a.history_id]  # newest first
    kept = entries[0].photo_path
    assert kept and open(kept, "rb").read() == photo and entries[1].photo_path is None
    client.delete_history(b.history_id)
    assert [e.id for e in client.history()] == [a.history_id]
    assert not (tmp_path / "phone" / "photos" / kept.rsplit("/", 1)[1]).exists()
    with pytest.raises(KeyError):
        client.delete_history(999)
    card = client.installed_model()
    assert (card.version, card.epsilon, card.delta, card.runtime) == (1, 9.8, 1e-05, "onnxruntime")
