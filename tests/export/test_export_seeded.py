"""Issue 12: a model trained with a test-only noise seed never leaves export as private."""
from __future__ import annotations

import pytest

from edge_client.privacy_figures import guarantee_text
from export import ExportError, cli
from export.manifest import build_manifest, load_policy
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.model import build_model

PRIVACY = {"epsilon": 7.301, "delta": 1e-5, "accountant": "rdp", "privacy_model": "patient-level",
           "noise_multiplier": 1.1, "sample_rate": 0.05, "steps": 120, "clipping_norm": 2.0}


def _checkpoint(tmp_path, *, seeded: bool):
    path = save_checkpoint(tmp_path / "model.pt", build_model(), preprocess={"image_size": 32}, mode="dopamine",
                           privacy={**PRIVACY, "seeded": seeded})
    return path, load_checkpoint(path)[1]


def test_export_refuses_a_seeded_checkpoint_before_converting(tmp_path, capsys):
    path, _ = _checkpoint(tmp_path, seeded=True)
    code = cli.main(["all", "--checkpoint", str(path), "--out", str(tmp_path / "dist")])
    err = capsys.readouterr().err
    assert code == 2 and "noise seed" in err and "--allow-seeded" in err
    assert not (tmp_path / "dist").exists()


def test_allow_seeded_marks_the_manifest_a_test_build(tmp_path):
    _, ckpt = _checkpoint(tmp_path, seeded=True)
    quality, referral = load_policy(None)
    with pytest.raises(ExportError, match="noise seed"):
        build_manifest(ckpt, model_version=1, artifacts=[], quality=quality, referral=referral)
    privacy = build_manifest(ckpt, model_version=1, artifacts=[], quality=quality, referral=referral,
                             allow_seeded=True)["privacy"]
    assert privacy["seeded"] and privacy["test_build"]
    assert guarantee_text(privacy) == "no DP guarantee: test build"


def test_honest_checkpoint_epsilon_is_rounded_up_and_not_a_test_build(tmp_path):
    _, ckpt = _checkpoint(tmp_path, seeded=False)
    quality, referral = load_policy(None)
    privacy = build_manifest(ckpt, model_version=1, artifacts=[], quality=quality, referral=referral)["privacy"]
    assert privacy["epsilon"] == 7.31 and not privacy["seeded"] and not privacy["test_build"]
