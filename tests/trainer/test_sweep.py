"""`trainer sweep`: every private mode gets the same q, steps and learning rate; the command runs,
resumes without redoing work, and refuses a second sweep with other settings in the same folder."""
from __future__ import annotations

import json

import pytest
import torch

from trainer.cli import main
from trainer.model import build_model
from trainer.modes.fedavg import local_dp_steps
from trainer.sweep.plan import SweepSettings, planned_runs, run_config


def _settings(**kw) -> SweepSettings:
    return SweepSettings(**{"data": "data", "weights": "body.pt", "hospitals": 10, "epochs": 5, "sample_rate": 0.1, **kw})


def test_private_modes_differ_only_in_where_the_noise_goes():
    s, n = _settings(), 1000
    cdp, dop, fl = (run_config(s, m, seed=0, out="o", train_patients=n, target_epsilon=2.0)
                    for m in ("central-dp", "dopamine", "fl-parallel-dp"))
    assert (cdp.batch_size / n, cdp.rounds) == (0.1, 5)              # 5 epochs of 10 steps
    assert (dop.sample_rate, dop.rounds, dop.eval_every) == (0.1, 50, 10)
    q_k, steps = local_dp_steps(n // 10, local_batch_size=fl.local_batch_size, local_epochs=fl.local_epochs)
    assert (q_k, steps * fl.rounds) == (0.1, 50)                      # each hospital: 50 steps at q
    assert len({(c.learning_rate, c.optimizer, c.clipping_norm, c.delta, c.target_epsilon, c.weights)
                for c in (cdp, dop, fl)}) == 1
    assert all(c.noise_seed is None and c.noise_multiplier is None for c in (cdp, dop, fl))  # CSPRNG, calibrated


def test_rounds_grid_keeps_the_passes_over_the_data():
    s = _settings()
    for t, q in ((25, 0.2), (50, 0.1), (400, 0.0125)):
        config = run_config(s, "dopamine", seed=1, out="o", train_patients=1000, target_epsilon=8.0, rounds=t)
        assert (config.rounds, config.sample_rate, config.eval_every) == (t, q, t // 5)
    with pytest.raises(ValueError, match="must be >= epochs"):
        run_config(s, "dopamine", seed=1, out="o", train_patients=1000, target_epsilon=8.0, rounds=4)
    with pytest.raises(ValueError, match="target epsilon"):
        run_config(s, "central-dp", seed=1, out="o", train_patients=1000)
    assert len(planned_runs(("central", "dopamine"), (1.0, 8.0), (0, 1, 2))) == 3 + 6


def test_sweep_cli_runs_resumes_and_refuses_other_settings(tiny_fundus, tmp_path, capsys):
    weights = tmp_path / "body.pt"
    torch.save(build_model(5).state_dict(), weights)   # a public state dict: body loaded, head fresh
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(tiny_fundus), "--weights", str(weights), "--weights-public", "--out", str(out),
            "--quick", "--modes", "central,dopamine", "--hospitals", "3", "--threads", "1"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["mode"]) for r in rows] == [("body", "body"), ("run", "central"), ("run", "dopamine")]
    dopamine = rows[2]
    assert dopamine["epsilon"] <= 8.0 and dopamine["delta"] == 1e-5 and dopamine["accountant"] == "rdp"
    assert 0.0 <= dopamine["test_accuracy"] <= 1.0 and dopamine["noise_multiplier"] > 0
    table = (out / "sweep.md").read_text()
    assert "| dopamine | 8 | 8.00 | 1e-05 | rdp |" in table and "| central | — | ∞ (no DP) |" in table
    assert (out / "sweep.png").stat().st_size > 10_000
    capsys.readouterr()

    before = (out / "results.jsonl").read_text()
    assert main(args) == 0                                            # resumes: nothing to redo
    assert "2 of 2 runs already" in capsys.readouterr().out
    assert (out / "results.jsonl").read_text() == before

    assert main([*args, "--epochs", "2"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main([a for a in args if a != "--weights-public"]) == 2
    assert "--weights-public is required" in capsys.readouterr().err
    assert main([*args, "--epsilons", "1,two"]) == 2
    assert "--epsilons" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"
    for bad in (["--weights", str(tmp_path / "none.pt")], ["--data", str(tmp_path / "no-data")]):
        assert main([*args, "--out", str(elsewhere), *bad]) == 2       # the last flag given wins
        assert "not found" in capsys.readouterr().err
        assert not elsewhere.exists()                                 # nothing half-made
