"""A run killed by a real signal resumes from its last complete round, ε intact, and ends where an
uninterrupted run ends (with a test-only noise seed, so that the two runs can be compared)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

ARGS = ["--mode", "dopamine", "--hospitals", "2", "--rounds", "6", "--image-size", "32", "--sample-rate", "0.3",
        "--noise-multiplier", "1.0", "--clipping-norm", "1.0", "--learning-rate", "0.001", "--delta", "1e-3",
        "--seed", "0", "--noise-seed", "0", "--threads", "1", "--quiet"]


def _train(data, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "trainer", "train", "--data", str(data), "--out", str(out),
                             *ARGS, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tiny_fundus, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = _train(tiny_fundus, whole)
    assert reference.wait(timeout=500) == 0, reference.stderr.read()

    victim = _train(tiny_fundus, killed)
    deadline = time.time() + 400
    while time.time() < deadline:
        if (killed / "metrics.jsonl").exists() and len(_rows(killed)) >= 2:
            break
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    rounds_done = len(_rows(killed))
    assert 2 <= rounds_done < 6, "the run was not interrupted mid-way"

    resumed = subprocess.run([sys.executable, "-m", "trainer", "train", "--resume", str(killed), "--quiet"],
                             capture_output=True, text=True, timeout=500)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _rows(whole), _rows(killed)
    assert [r["round"] for r in b] == list(range(1, 7))
    assert [r["epsilon"] for r in a] == [r["epsilon"] for r in b]  # the accountant was not reset
    assert [r["epsilon"] for r in b] == sorted(r["epsilon"] for r in b)
    assert a[-1]["val_accuracy"] == pytest.approx(b[-1]["val_accuracy"])
    wa = torch.load(whole / "state.pt", weights_only=True)["mode"]["weights"]
    wb = torch.load(killed / "state.pt", weights_only=True)["mode"]["weights"]
    assert torch.allclose(wa, wb, atol=1e-6)
