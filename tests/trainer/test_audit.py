"""`trainer audit` as the attacker would run it: canaries through each mode's own training code.

Non-private training gives a large empirical ε; honest Dopamine stays below its claim; a mechanism
broken on purpose (noise off, or noise from a seed the auditor knows) is caught above its claim.
The noise is the OS CSPRNG's in every honest run (no seed): the assertions hold by wide margins.
"""
from __future__ import annotations

import json

import pytest

from trainer.audit.harness import audit_config, run_audit
from trainer.cli import main

CLAIM = 2.0
SMALL = dict(epochs=2, sample_rate=0.2, hospitals=3, threads=1)


def test_audit_cli_non_private_is_exposed_honest_dopamine_is_not(tiny_fundus, tmp_path):
    out = tmp_path / "audit"
    code = main(["audit", "--data", str(tiny_fundus), "--modes", "central,dopamine", "--target-epsilon", str(CLAIM),
                 "--canaries", "1000", "--epochs", "2", "--sample-rate", "0.2", "--hospitals", "3",
                 "--threads", "1", "--out", str(out)])
    assert code == 0
    central, dopamine = json.loads((out / "audit.json").read_text())["results"]
    assert central["epsilon"] is None and central["observation"] == "final model"
    assert central["epsilon_lower"] > CLAIM          # more than an ε = 2 mechanism could ever show
    assert dopamine["epsilon"] == CLAIM and dopamine["observation"] == "released sums"
    assert dopamine["epsilon_lower"] < CLAIM and not dopamine["flagged"]
    assert "| dopamine | 2.00 | 1e-05 | rdp |" in (out / "audit.md").read_text()
    assert (out / "audit_roc.png").stat().st_size > 10_000


@pytest.mark.parametrize("broken", ["noise-off", "known-seed"])
def test_a_broken_mechanism_is_caught(tiny_fundus, broken):
    config = audit_config("dopamine", data=str(tiny_fundus), weights=None, target_epsilon=CLAIM, **SMALL)
    result = run_audit(config, canaries=1000, test_only_break=broken)
    assert result.epsilon == CLAIM                   # the ledger still claims ε = 2 ...
    assert result.flagged and result.epsilon_lower > CLAIM + 1, result   # ... and the audit refutes it


def test_breaks_are_not_product_flags_and_bad_input_is_one_line(tiny_fundus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--data", str(tiny_fundus), "--test-only-break", "noise-off"])
    capsys.readouterr()
    assert main(["audit", "--data", str(tiny_fundus), "--canaries", "0", "--modes", "dopamine",
                 "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--canaries must be in 1.." in err and "Traceback" not in err
    with pytest.raises(ValueError, match="test_only_break"):
        run_audit(audit_config("central", data=str(tiny_fundus), weights=None, target_epsilon=None, **SMALL),
                  canaries=10, test_only_break="noise-off")
