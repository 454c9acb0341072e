"""Clinical figures chosen at export: temperature scaling, the referral threshold, ECE, reliability
diagrams, public feature statistics; in the session's bundle and on a labelled (private) folder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_client.manifest import validate_manifest
from edge_client.ood import FeatureStats
from edge_client.preprocess import PreprocessConfig
from edge_client.referral import calibrated_probabilities
from export import ExportError, cli
from export.clinical import (ClinicalOptions, choose_threshold, clinical_blocks, feature_stats, fit_temperature,
                             referable_ece, sensitivity_specificity, wilson_lower)
from export.manifest import load_policy
from trainer.metrics import expected_calibration_error

pytestmark = pytest.mark.timeout(300)


def _miscalibrated(scale: float, n: int = 4000, seed: int = 0):
    """Labels drawn from softmax(z) (a calibrated model), reported as logits z * scale."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, 5))
    p = calibrated_probabilities(z)
    y = np.array([rng.choice(5, p=row) for row in p])
    return z * scale, y


@pytest.mark.parametrize("scale", [3.0, 0.4])
def test_temperature_undoes_over_and_under_confidence_and_cuts_ece(scale):
    logits, y = _miscalibrated(scale)
    t = fit_temperature(logits[:2000], y[:2000])
    assert t == pytest.approx(scale, rel=0.15)
    before = expected_calibration_error(y[2000:], calibrated_probabilities(logits[2000:]), bins=10)
    after = expected_calibration_error(y[2000:], calibrated_probabilities(logits[2000:], t), bins=10)
    assert after < before / 3 and after < 0.03
    ref = y[2000:] >= 2
    p_before = calibrated_probabilities(logits[2000:])[:, 2:].sum(1)
    p_after = calibrated_probabilities(logits[2000:], t)[:, 2:].sum(1)
    assert referable_ece(p_after, ref) < referable_ece(p_before, ref)


def test_threshold_is_the_highest_reaching_the_target_sensitivity():
    rng = np.random.default_rng(1)
    y = rng.random(500) < 0.4
    p = np.clip(np.where(y, rng.normal(0.6, 0.2, 500), rng.normal(0.3, 0.2, 500)), 0, 1)
    t = choose_threshold(p, y, 0.9)
    figures = sensitivity_specificity(p, y, t)
    assert figures["sensitivity"] >= 0.9
    above = np.sort(p[y])[np.sort(p[y]) > t][0]  # the next candidate misses the target
    assert sensitivity_specificity(p, y, above)["sensitivity"] < 0.9
    assert figures["tp"] + figures["fn"] == y.sum() and figures["tn"] + figures["fp"] == (~y).sum()
    with pytest.raises(ExportError, match="no referable"):
        choose_threshold(p, np.zeros(500, bool), 0.9)


def test_wilson_bound_and_feature_floor():
    assert wilson_lower(10, 10) == pytest.approx(0.7225, abs=1e-4) and wilson_lower(0, 10) == 0.0
    assert wilson_lower(0, 0) is None
    f = np.zeros((50, 4))
    f[:, 0] = np.random.default_rng(0).normal(5, 2, 50)
    mean, scale = feature_stats(f)
    assert scale[1] > 0 and scale[1] == pytest.approx(0.1 * np.mean([scale[0], 0, 0, 0]), rel=1e-3)


def test_policy_keys_are_checked():
    quality, referral = load_policy(None, overrides={"referral": {"target_sensitivity": 0.95, "threshold": None}})
    assert referral["target_sensitivity"] == 0.95 and referral["threshold"] is None
    for bad in ({"target_sensitivity": 1.5}, {"ungradable_attempts": 2.5}, {"refer_at_grade": 0},
                {"uncertain_width": -0.1}):
        with pytest.raises(ExportError, match=next(iter(bad))):
            load_policy(None, overrides={"referral": bad})


def test_bundle_carries_the_clinical_blocks(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    validate_manifest(manifest)
    r, c, o = manifest["referral"], manifest["calibration"], manifest["ood"]
    v = r["validation"]
    assert 0 < r["threshold"] <= r["uncertain_upper"] <= 1 and r["target_sensitivity"] == 0.9
    assert v["validated"] is False and v["data"] == "public" and "synthetic" in v["source"]
    assert v["fit"]["sensitivity"] >= 0.9 and v["n"] + v["fit"]["n"] == 300  # chosen on one half, measured on the other
    assert c["method"] == "temperature" and c["temperature"] > 0 and c["data"] == "public" and not c["outside_epsilon"]
    assert c["ece_top1_after"] < c["ece_top1_before"]
    assert o["public"] is True and len(o["mean"]) == len(o["scale"]) == 512 and "synthetic" in o["source"]
    assert list(manifest)[-1] == "ood"
    report = json.loads((bundle / "report.json").read_text())
    assert report["clinical"]["calibration"] == c
    rows = report["clinical"]["artifacts_on_parity_photos"]
    assert set(rows) == {a["name"] for a in manifest["artifacts"]}
    assert all(row["ood_flag_rate"] <= 0.05 for row in rows.values())  # public fundus photos pass on every artifact
    text = (bundle / "clinical.md").read_text()
    assert "NOT VALIDATED" in text and "reliability_after.png" in text
    for name in ("reliability_before.png", "reliability_after.png"):
        assert (bundle / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_labelled_private_folder_validates_and_says_outside_epsilon(tmp_path, trained_checkpoint):
    from trainer.checkpoint import load_checkpoint
    from trainer.data.synth import generate_dataset
    from trainer.model import LogitsAndFeatures

    model, ckpt = load_checkpoint(trained_checkpoint)
    cfg = PreprocessConfig.from_dict(dict(ckpt["preprocess"]))
    folder = generate_dataset(tmp_path / "clinic", 60, size=48, seed=5, class_probs=(0.2,) * 5)
    _, policy = load_policy(None)
    referral, calib, ood, summary = clinical_blocks(
        LogitsAndFeatures(model).eval(), cfg, ClinicalOptions(data_dir=folder, ood_images=20), policy,
        out=tmp_path, artifact_outputs={}, parity_labels=None, parity_public=False, log=lambda _: None)
    assert referral["validation"]["validated"] is True and referral["validation"]["data"] == "private"
    assert calib["outside_epsilon"] is True and "outside ε" in calib["source"] and str(folder) in calib["source"]
    assert FeatureStats.from_block(ood).threshold > 0 and "synthetic" in ood["source"]  # never the private photos
    assert (tmp_path / "clinical.md").is_file() and summary["artifacts_on_parity_photos"] == {}


def test_a_missing_clinical_folder_fails_before_any_conversion(tmp_path, trained_checkpoint, keys, capsys):
    status = cli.main(["all", "--checkpoint", str(trained_checkpoint), "--out", str(tmp_path / "dist"),
                       "--key", str(keys[0]), "--clinical-data", str(tmp_path / "nowhere")])
    assert status == 2 and "--clinical-data" in capsys.readouterr().err
    assert not (tmp_path / "dist").exists()
