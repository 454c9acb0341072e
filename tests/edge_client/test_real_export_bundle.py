"""End to end with the session's real `python -m export all` bundle (tests/conftest.py): publish,
sync (LiteRT int8), diagnose."""
import json

import numpy as np
import pytest

from tests.helpers.bundles import HubProcess, init_hub, run_cli
from tests.helpers.photos import fundus_photos, png_bytes

from edge_client.preprocess import PreprocessConfig, preprocess_image
from edge_client.runtimes import LiteRTRuntime, OnnxRuntime



pytestmark = pytest.mark.slow  # needs the session's trained and exported model


def test_publish_sync_diagnose_real_bundle(tmp_path, bundle, export_keys):
    if not LiteRTRuntime.available():
        pytest.skip("ai-edge-litert not installed")
    hub_root, home, photo = tmp_path / "hub", tmp_path / "phone", tmp_path / "photo.png"
    img = fundus_photos(1, size=256, seed=1)[0]
    photo.write_bytes(png_bytes(img))
    public_key = export_keys[1]
    init_hub(hub_root, public_key)
    assert run_cli("hub", "publish", bundle, "--root", hub_root).returncode == 0
    with HubProcess(hub_root) as hub:
        r = run_cli("edge_client", "sync", "--server", hub.url, "--key", public_key,
                    "--home", home, "--quiet")
        assert r.returncode == 0 and "model_int8.tflite" in r.stdout, r.stderr
    r = run_cli("edge_client", "diagnose", photo, "--json", "--home", home)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["epsilon"] == 7.31 and abs(sum(d["probabilities"]) - 1) < 1e-5
    # the int8 LiteRT path (int8 weights; int8 or float activations as the export chose) agrees with
    # the fp32 ONNX model: the same grade, logits within 2 % of their range (this model's span ~100)
    manifest = json.loads((bundle / "manifest.json").read_text())
    arts = {a["name"]: a for a in manifest["artifacts"]}
    x = preprocess_image(img, PreprocessConfig.from_dict(manifest["preprocess"]))[None]
    lite = LiteRTRuntime(bundle / "model_int8.tflite", arts["model_int8.tflite"]).run(x)
    ref = OnnxRuntime(bundle / "model_fp32.onnx", arts["model_fp32.onnx"]).run(x)
    assert lite[0].shape == (1, 5) and lite[1].shape == (1, 512)
    assert lite[0].argmax() == ref[0].argmax()
    assert np.abs(lite[0] - ref[0]).max() < 0.02 * np.ptp(ref[0]) + 0.1
    assert np.corrcoef(lite[1].ravel(), ref[1].ravel())[0, 1] > 0.9
