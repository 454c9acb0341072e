"""Bad input and low agreement: a clear one-line error, a non-zero exit, and no DIST."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from export import cli

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]


def run_export(capsys, *args) -> tuple[int, str]:
    status = cli.main(["all", *map(str, args)])
    return status, capsys.readouterr().err


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_missing_checkpoint(tmp_path, keys, capsys):
    status, err = run_export(capsys, "--checkpoint", tmp_path / "nope.pt", "--out", tmp_path / "dist",
                             "--key", keys[0])
    assert status == 2 and "nope.pt" in err and "not found" in err and "Traceback" not in err
    assert_nothing_written(tmp_path / "dist")


def test_corrupt_checkpoint(tmp_path, keys, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(os.urandom(1000))
    status, err = run_export(capsys, "--checkpoint", bad, "--out", tmp_path / "dist", "--key", keys[0])
    assert status == 2 and "model.pt" in err and "not a readable checkpoint" in err
    assert_nothing_written(tmp_path / "dist")


def test_checkpoint_of_another_architecture(tmp_path, trained_checkpoint, keys, capsys):
    ckpt = torch.load(trained_checkpoint, weights_only=True)
    ckpt["arch"] = "resnet18"
    other = tmp_path / "resnet.pt"
    torch.save(ckpt, other)
    status, err = run_export(capsys, "--checkpoint", other, "--out", tmp_path / "dist", "--key", keys[0])
    assert status == 2 and "resnet18" in err and "architecture" in err
    assert_nothing_written(tmp_path / "dist")


def test_empty_calibration_folder(tmp_path, trained_checkpoint, keys, capsys):
    (tmp_path / "calib").mkdir()
    status, err = run_export(capsys, "--checkpoint", trained_checkpoint, "--out", tmp_path / "dist",
                             "--key", keys[0], "--calibration", tmp_path / "calib")
    assert status == 2 and "calib" in err and "no images" in err
    assert_nothing_written(tmp_path / "dist")


def test_unwritable_output_folder(tmp_path, trained_checkpoint, keys, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    status, err = run_export(capsys, "--checkpoint", trained_checkpoint, "--out", blocker / "dist",
                             "--key", keys[0], "--formats", "onnx")
    assert status == 2 and "cannot write the output folder" in err


def test_non_empty_output_needs_overwrite(tmp_path, trained_checkpoint, keys, capsys):
    out = tmp_path / "dist"
    out.mkdir()
    (out / "old.txt").write_text("previous bundle")
    status, err = run_export(capsys, "--checkpoint", trained_checkpoint, "--out", out, "--key", keys[0])
    assert status == 2 and "--overwrite" in err
    assert (out / "old.txt").read_text() == "previous bundle"


def test_private_key_inside_output_is_refused(tmp_path, trained_checkpoint, capsys):
    from export.signing import generate_keypair

    private, _ = generate_keypair(tmp_path / "dist" / "keys")
    status, err = run_export(capsys, "--checkpoint", trained_checkpoint, "--out", tmp_path / "dist",
                             "--key", private, "--overwrite")
    assert status == 2 and "must not live inside" in err
    assert private.is_file()


def _break_int8_onnx(monkeypatch) -> None:
    """Make export write a deliberately broken int8 ONNX: one conv's int8 weights in reverse order."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from export import onnx_export

    real = onnx_export.quantize_int8

    def broken(fp32_path, out_path, *args, **kwargs):
        path = real(fp32_path, out_path, *args, **kwargs)
        model = onnx.load(str(path))
        weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
        target = max(weights, key=lambda t: int(np.prod(t.dims)))
        target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target)[::-1].copy(), target.name))
        onnx.save(model, str(path))
        return path

    monkeypatch.setattr(onnx_export, "quantize_int8", broken)


@pytest.mark.timeout(300)
def test_a_broken_artifact_is_refused_naming_it_then_forced(tmp_path, trained_checkpoint, keys, capsys, monkeypatch):
    out = tmp_path / "dist"
    common = ["--checkpoint", trained_checkpoint, "--out", out, "--key", keys[0], "--formats", "onnx",
              "--test-images", "60", "--calibration-images", "16", "--latency-runs", "1"]
    _break_int8_onnx(monkeypatch)
    status, err = run_export(capsys, *common)  # the default --min-agreement (0.98)
    assert status == 2 and "model_int8.onnx" in err and "model_fp32.onnx" not in err and "--force" in err
    assert "top-1" in err and "referable" in err
    assert_nothing_written(out)
    status, err = run_export(capsys, *common, "--force")
    assert status == 0 and "model_int8.onnx" in err
    assert (out / "manifest.sig").is_file() and "FORCED" in (out / "report.md").read_text()
    # --overwrite swaps a complete new bundle in, with the new version and a referral override
    monkeypatch.undo()
    status, _ = run_export(capsys, *common, "--overwrite", "--version", "4", "--refer-at-grade", "3")
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert status == 0 and manifest["model_version"] == 4 and manifest["referral"]["refer_at_grade"] == 3
    assert_nothing_written(tmp_path / "never")  # helper sanity: the parent holds no build folders
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dist.")]


@pytest.mark.timeout(300)
def test_without_key_a_dev_key_is_used_loudly_and_kept_out_of_dist(tmp_path, trained_checkpoint):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "export", "all", "--checkpoint", str(trained_checkpoint),
                           "--out", str(tmp_path / "dist"), "--formats", "onnx", "--test-images", "20",
                           "--calibration-images", "8", "--latency-runs", "1", "--min-agreement", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNING" in proc.stderr and "DEVELOPMENT key" in proc.stderr
    key_dir = tmp_path / "config" / "dopamine" / "dev-signing-key"
    assert (key_dir / "private.key").is_file()
    assert not list((tmp_path / "dist").rglob("*.key"))
    assert cli.main(["verify", str(tmp_path / "dist"), "--key", str(key_dir / "public.key")]) == 0


def test_bad_policy_toml_is_refused(tmp_path, trained_checkpoint, keys, capsys):
    policy = tmp_path / "policy.toml"
    policy.write_text("[referral]\nrefer_at_grade = 9\n")
    status, err = run_export(capsys, "--checkpoint", trained_checkpoint, "--out", tmp_path / "dist",
                             "--key", keys[0], "--policy", policy)
    assert status == 2 and "refer_at_grade" in err
    assert_nothing_written(tmp_path / "dist")
