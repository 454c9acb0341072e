"""The bundle as a whole: report, manifest fields, signature, key hygiene."""
from __future__ import annotations

import base64
import json

import pytest

from export import ExportError, cli, signing
from edge_client.fileio import sha256_file

pytestmark = pytest.mark.timeout(600)
ARTIFACTS = {"model_fp32.onnx", "model_int8.onnx", "model_int8.tflite", "model_fp32.tflite",
             "model_int8.mlpackage.zip"}


@pytest.fixture(scope="module")
def manifest(bundle):
    return json.loads((bundle / "manifest.json").read_bytes())


def test_bundle_holds_every_file_and_no_leftovers(bundle):
    names = {p.name for p in bundle.iterdir()}
    assert names == ARTIFACTS | {"model_int8.mlpackage", "manifest.json", "manifest.sig", "report.json", "report.md",
                                 "clinical.md", "clinical.json", "reliability_before.png", "reliability_after.png",
                                 "export.log"}
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no temporary build folder


def test_manifest_fields_are_complete(manifest, trained_checkpoint):
    import torch

    ckpt = torch.load(trained_checkpoint, weights_only=True)
    assert manifest["schema_version"] == 1 and manifest["model_version"] == 3
    assert manifest["arch"] == "squeezenet1_1-dr" and manifest["class_names"] == ckpt["class_names"]
    assert manifest["input_size"] == 48 and manifest["preprocess"] == ckpt["preprocess"]
    from edge_client.quality import DEFAULTS

    assert manifest["quality"] == DEFAULTS
    assert {k: manifest["referral"][k] for k in ("refer_at_grade", "min_confidence", "ungradable_attempts")} == \
        {"refer_at_grade": 2, "min_confidence": 0.6, "ungradable_attempts": 3}  # the rest: tests/export/test_clinical.py
    assert manifest["training"] == {"mode": "dopamine", "rounds": 27, "hospitals": 3}
    assert manifest["privacy"] == {**{k: ckpt["privacy"][k] for k in ("epsilon", "delta", "accountant", "privacy_model")},
                                   "seeded": False, "test_build": False}
    assert manifest["metrics"] == ckpt["metrics"]
    assert manifest["created"].endswith("Z")


def test_manifest_artifacts_match_the_files(manifest, bundle):
    assert {a["name"] for a in manifest["artifacts"]} == ARTIFACTS
    for art in manifest["artifacts"]:
        path = bundle / art["name"]
        assert art["size"] == path.stat().st_size and art["sha256"] == sha256_file(path)
        assert art["runtime"] in {"onnxruntime", "litert", "coreml"} and art["precision"] in {"fp32", "int8"}
        assert art["inputs"][0]["layout"] == "NCHW" and art["inputs"][0]["shape"] == [1, 3, 48, 48]
        assert [o["name"] for o in art["outputs"]] == ["logits", "features"]
        assert [o["shape"] for o in art["outputs"]] == [[1, 5], [1, 512]]
        for tensor in art["inputs"] + art["outputs"]:
            quantized = tensor["dtype"] in {"int8", "uint8"}
            assert quantized == ("scale" in tensor) == ("zero_point" in tensor), (art["name"], tensor)


def test_edge_client_accepts_the_manifest(bundle, keys):
    from edge_client.manifest import read_public_key, verify_manifest

    manifest = verify_manifest((bundle / "manifest.json").read_bytes(), (bundle / "manifest.sig").read_bytes(),
                               read_public_key(keys[1]))
    assert manifest["model_version"] == 3


def test_signature_verifies_and_fails_after_one_changed_byte(bundle, keys):
    data, sig = (bundle / "manifest.json").read_bytes(), (bundle / "manifest.sig").read_bytes()
    assert len(base64.b64decode(sig.strip())) == 64 and sig.endswith(b"\n") and sig.count(b"\n") == 1
    signing.verify_manifest(data, sig, keys[1])
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(signing.SignatureError):
        signing.verify_manifest(bytes(tampered), sig, keys[1])
    other = signing.generate_keypair(bundle.parent / "other-keys")[1]
    with pytest.raises(signing.SignatureError):
        signing.verify_manifest(data, sig, other)


def test_verify_command(bundle, keys, capsys):
    assert cli.main(["verify", str(bundle), "--key", str(keys[1])]) == 0
    assert "ok:" in capsys.readouterr().out


def test_private_key_never_enters_dist(bundle, keys):
    secret = keys[0].read_bytes().strip()
    raw = base64.b64decode(secret)
    for path in bundle.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert secret not in content and raw not in content, path
    assert not list(bundle.rglob("*.key"))


def test_keygen_writes_phone_readable_keys(tmp_path):
    assert cli.main(["keygen", "--out", str(tmp_path / "k")]) == 0
    private, public = tmp_path / "k" / "private.key", tmp_path / "k" / "public.key"
    assert private.stat().st_mode & 0o777 == 0o600
    assert len(base64.b64decode(public.read_text().strip())) == 32
    assert len(private.read_text().splitlines()) == 1
    with pytest.raises(ExportError, match="already exists"):
        signing.generate_keypair(tmp_path / "k")


def test_report_is_complete(bundle):
    report = json.loads((bundle / "report.json").read_text())
    assert report["test_images"]["count"] == 200 and report["torch"]["accuracy"] is not None
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert set(rows) == ARTIFACTS
    for name, row in rows.items():
        for key in ("top1_agreement", "referable_agreement", "max_abs_dlogit", "accuracy", "kappa", "size",
                    "runtime", "precision", "activations"):
            assert row[key] is not None, (name, key)
        assert (row["latency_ms"] is None) == (row["runtime"] == "coreml")
    assert rows["model_int8.mlpackage.zip"]["size"] == sum(
        p.stat().st_size for p in (bundle / "model_int8.mlpackage").rglob("*") if p.is_file())
    markdown = (bundle / "report.md").read_text()
    assert all(name in markdown for name in ARTIFACTS) and "macOS" in markdown


def test_terminal_shows_one_line_per_artifact_and_the_log_the_rest(export_run):
    """Converter chatter (C++ absl lines, progress bars, warnings) lands in DIST/export.log."""
    dist, terminal = export_run
    lines = terminal.splitlines()
    report = json.loads((dist / "report.json").read_text())
    for row in report["artifacts"]:
        mine = [line for line in lines if line.startswith(f"{row['artifact']}: ")]
        assert len(mine) == 1, (row["artifact"], lines)
        assert f"{row['size'] / 1e6:.3f} MB" in mine[0] and f"top-1 agreement {row['top1_agreement']:.4f}" in mine[0]
        assert f"referable {row['referable_agreement']:.4f}" in mine[0]
        assert ("ms/image" in mine[0]) != (row["latency_ms"] is None)
    assert len([line for line in lines if line.startswith("clinical: T = ")]) == 1, lines
    assert len(lines) == len(report["artifacts"]) + 3, lines  # + "images: ...", "clinical: ..." and "wrote ..."
    log = (dist / "export.log").read_text()
    assert "LiteRT-Torch Convert" in log and "torch.onnx" in log and "model_int8.mlpackage" in log
    for noise in ("I0000", "absl", "[START]", "Warning", "XNNPACK"):
        assert noise not in terminal, noise
