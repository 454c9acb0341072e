"""`python -m trainer train`: every mode runs and writes its run directory; impossible settings
fail before training with a message that says what to change."""
import contextlib
import json
import subprocess
import sys

import pytest
import torch

from edge_client.privacy_figures import epsilon_str
from trainer.checkpoint import load_checkpoint
from trainer.cli import main

COMMON = ["--image-size", "32", "--seed", "0", "--threads", "1", "--quiet", "--delta", "1e-3"]
MODE_ARGS = {
    "central": ["--rounds", "1", "--batch-size", "32"],
    "central-dp": ["--rounds", "1", "--batch-size", "32", "--noise-multiplier", "1.0"],
    "fedavg": ["--rounds", "1", "--hospitals", "3", "--local-batch-size", "16"],
    "fl-parallel-dp": ["--rounds", "1", "--hospitals", "3", "--local-batch-size", "16", "--noise-multiplier", "1.0"],
    "dopamine": ["--rounds", "2", "--hospitals", "3", "--sample-rate", "0.2", "--target-epsilon", "20"],
}


def _train(data, out, *args):
    return subprocess.run([sys.executable, "-m", "trainer", "train", "--data", str(data), "--out", str(out),
                           *COMMON, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODE_ARGS))
def test_every_mode_writes_a_complete_run(tiny_fundus, tmp_path, mode):
    result = _train(tiny_fundus, tmp_path / mode, "--mode", mode, *MODE_ARGS[mode])
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / mode
    for name in ("config.json", "metrics.jsonl", "model.pt", "model_card.md", "confusion.png", "curves.png"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(0 <= r["val_accuracy"] <= 1 for r in rows)
    model, checkpoint = load_checkpoint(run / "model.pt")
    assert not any(k.startswith("_module.") for k in checkpoint["state_dict"])
    assert json.loads((run / "config.json").read_text())["mode"] == mode
    privacy = checkpoint["privacy"]
    card = (run / "model_card.md").read_text()
    if mode in ("central-dp", "fl-parallel-dp", "dopamine"):
        assert privacy["epsilon"] > 0 and privacy["delta"] == 1e-3 and privacy["accountant"] == "rdp"
        assert rows[-1]["epsilon"] == privacy["epsilon"]
        if mode == "dopamine":
            assert privacy["epsilon"] <= 20
        assert f"ε = {epsilon_str(privacy['epsilon'])}, δ = 0.001" in card   # the card says what the checkpoint holds
    else:
        assert privacy["epsilon"] is None
        assert "ε = ∞" in card
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("args,needle", [
    (["--mode", "dopamine", "--noise-multiplier", "1", "--sample-rate", "1.5"], "sample_rate"),
    (["--mode", "dopamine", "--noise-multiplier", "-1"], "noise_multiplier"),
    (["--mode", "dopamine", "--noise-multiplier", "1", "--delta", "0.5"], "delta"),
    (["--mode", "dopamine", "--noise-multiplier", "1", "--hospitals", "500"], "hospitals"),
    (["--mode", "dopamine", "--noise-multiplier", "1", "--min-participants", "2", "--colluders", "2"], "colluders"),
    (["--mode", "dopamine", "--rounds", "3"], "--target-epsilon"),
    (["--mode", "dopamine", "--target-epsilon", "1e-9", "--rounds", "5"], "epsilon"),
    (["--mode", "warp"], "invalid choice"),
])
def test_impossible_settings_fail_before_training(tiny_fundus, tmp_path, capsys, args, needle):
    # In-process (the same main() as `python -m trainer`): no interpreter start per case.
    with pytest.raises(SystemExit) if needle == "invalid choice" else _no_exit():
        code = main(["train", "--data", str(tiny_fundus), "--out", str(tmp_path / "run"), *COMMON, *args])
        assert code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "run" / "state.pt").exists()


def test_bad_data_folder_is_named(tmp_path):
    result = _train(tmp_path / "nowhere", tmp_path / "run", "--mode", "central")
    assert result.returncode == 2 and "nowhere" in result.stderr and "Traceback" not in result.stderr


@contextlib.contextmanager
def _no_exit():
    yield
