"""Issue 12, end to end: the demo pipeline, small, through the real CLIs (synth -> Dopamine ->
export -> hub publish -> device sync), and the privacy claims the DEVICE ends up holding:
not seeded, δ below 1/N, ε rounded up and equal to the accountant's own figure, and the same
words on the device's card as in the signed manifest.
"""
from __future__ import annotations

import json

import pytest

from edge_client.api import EdgeClient
from edge_client.privacy_figures import epsilon_str, guarantee_text, round_up
from tests.helpers.bundles import HubProcess, init_hub, run_cli
from trainer.privacy import PrivacyLedger

pytestmark = pytest.mark.slow


def _ok(result):
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def test_a_published_model_keeps_its_privacy_claims_on_the_device(tmp_path):
    data, run, dist, keys, hub_root, home = (tmp_path / n for n in ("data", "run", "dist", "keys", "hub", "phone"))
    _ok(run_cli("trainer", "synth", "--out", data, "--n", "120", "--size", "32", "--seed", "5"))
    _ok(run_cli("trainer", "train", "--mode", "dopamine", "--data", data, "--out", run, "--image-size", "32",
                "--hospitals", "3", "--sample-rate", "0.3", "--target-epsilon", "8", "--rounds", "2",
                "--delta", "1e-3", "--threads", "1", "--quiet", timeout=600))
    _ok(run_cli("export", "keygen", "--out", keys))
    _ok(run_cli("export", "all", "--checkpoint", run / "model.pt", "--out", dist, "--formats", "onnx",
                "--key", keys / "private.key", "--calibration-images", "16", "--test-images", "200",
                "--latency-runs", "1", timeout=600))
    init_hub(hub_root, keys / "public.key")
    _ok(run_cli("hub", "publish", dist, "--root", hub_root, "--checkpoint", run / "model.pt"))
    with HubProcess(hub_root) as hub:
        EdgeClient(home).sync(hub.url, public_key=keys / "public.key")

    # What the accountant says, recomputed here from the checkpoint's own history.
    import torch
    checkpoint = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    config = json.loads((run / "config.json").read_text())
    assert config["noise_seed"] is None and checkpoint["privacy"]["seeded"] is False
    ledger = PrivacyLedger(delta=config["delta"], accountant=config["accountant"],
                           history=[tuple(h) for h in checkpoint["privacy"]["histories"][0]])
    accountant_epsilon = round_up(ledger.epsilon())
    training_patients = int((run / "partition.txt").read_text().splitlines()[-1].split()[1])

    model = EdgeClient(home).installed_model()
    held = json.loads((home / "models" / str(model.version) / "manifest.json").read_text())["privacy"]
    assert held["seeded"] is False and held["test_build"] is False
    assert held["delta"] == config["delta"] < 1 / training_patients
    assert held["epsilon"] == accountant_epsilon == round_up(held["epsilon"]) <= 8.0
    assert held["accountant"] == "rdp"
    assert (model.epsilon, model.delta, model.accountant) == (held["epsilon"], held["delta"], held["accountant"])
    assert model.card.privacy_text == guarantee_text(held)
    assert f"ε = {epsilon_str(accountant_epsilon)}" in model.card.privacy_text
