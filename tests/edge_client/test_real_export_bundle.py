"""End to end with the real `python -m export all` bundle: publish, sync (LiteRT int8), diagnose."""
import json

import numpy as np
import pytest
from tests.helpers.bundles import HubProcess, init_hub, run_cli
from tests.helpers.photos import fundus_photos, png_bytes

from edge_client.preprocess import PreprocessConfig, preprocess_image
from edge_client.runtimes import LiteRTRuntime, OnnxRuntime



@pytest.fixture(scope="session")
def real_dist(tmp_path_factory):
    import torch

    from trainer.checkpoint import save_checkpoint
    from trainer.model import build_model

    work = tmp_path_factory.mktemp("real_export")
    torch.manual_seed(0)
    save_checkpoint(work / "model.pt", build_model(), preprocess=PreprocessConfig(image_size=64).to_dict(),
                    mode="dopamine", privacy={"epsilon": 7.5, "delta": 1e-5, "accountant": "rdp",
                                              "privacy_model": "patient-level", "noise_multiplier": 1.0,
                                              "sample_rate": 0.1, "steps": 10, "clipping_norm": 2.0})
    assert run_cli("export", "keygen", "--out", work / "keys").returncode == 0
    r = run_cli("export", "all", "--checkpoint", work / "model.pt", "--out", work / "dist", "--formats",
                "onnx,tflite", "--key", work / "keys" / "private.key", "--calibration-images", "8",
                "--latency-runs", "2", timeout=540)
    assert r.returncode == 0, r.stderr[-2000:]
    return work


def test_publish_sync_diagnose_real_bundle(tmp_path, real_dist):
    if not LiteRTRuntime.available():
        pytest.skip("ai-edge-litert not installed")
    hub_root, home, photo = tmp_path / "hub", tmp_path / "phone", tmp_path / "photo.png"
    img = fundus_photos(1, size=256, seed=1)[0]
    photo.write_bytes(png_bytes(img))
    init_hub(hub_root, real_dist / "keys" / "public.key")
    assert run_cli("hub", "publish", real_dist / "dist", "--root", hub_root).returncode == 0
    with HubProcess(hub_root) as hub:
        r = run_cli("edge_client", "sync", "--server", hub.url, "--key", real_dist / "keys" / "public.key",
                    "--home", home, "--quiet")
        assert r.returncode == 0 and "model_int8.tflite" in r.stdout, r.stderr
    r = run_cli("edge_client", "diagnose", photo, "--json", "--home", home)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["epsilon"] == 7.5 and abs(sum(d["probabilities"]) - 1) < 1e-5
    # the int8 LiteRT path (quantize input, dequantize outputs) agrees with the fp32 ONNX model
    manifest = json.loads((real_dist / "dist" / "manifest.json").read_text())
    arts = {a["name"]: a for a in manifest["artifacts"]}
    x = preprocess_image(img, PreprocessConfig.from_dict(manifest["preprocess"]))[None]
    lite = LiteRTRuntime(real_dist / "dist" / "model_int8.tflite", arts["model_int8.tflite"]).run(x)
    ref = OnnxRuntime(real_dist / "dist" / "model_fp32.onnx", arts["model_fp32.onnx"]).run(x)
    assert lite[0].shape == (1, 5) and lite[1].shape == (1, 512)
    assert np.abs(lite[0] - ref[0]).max() < 1.0
    assert np.corrcoef(lite[1].ravel(), ref[1].ravel())[0, 1] > 0.9
