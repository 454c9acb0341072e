"""ε from our ledger against Google's dp-accounting (an independent implementation)."""
import json
import subprocess
import sys

import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

from trainer.privacy.accounting import PrivacyLedger, calibrate_noise_multiplier, compute_epsilon, round_up

OPACUS_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def _google_rdp(sigma, q, steps, delta):
    accountant = rdp_privacy_accountant.RdpAccountant(OPACUS_ORDERS)
    accountant.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("sigma,q,steps,delta", [(1.15, 0.03425, 3000, 1e-4), (1.0, 0.01, 1000, 1e-5),
                                                 (2.0, 0.2, 50, 1e-5), (0.8, 0.05, 200, 1e-5)])
def test_rdp_matches_google_dp_accounting_within_one_percent(sigma, q, steps, delta):
    ours = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta, accountant="rdp")
    assert ours == pytest.approx(_google_rdp(sigma, q, steps, delta), rel=0.01)


def test_cached_rdp_is_exactly_opacus_rdp_accountant():
    """The one-step-RDP cache must not change a single bit of ε, for mixed histories too."""
    from opacus.accountants import RDPAccountant
    histories = [[(1.1, 0.1, 1)], [(1.1, 0.1, 40)], [(0.8, 0.05, 7), (1.3, 0.2, 3), (0.8, 0.05, 11)],
                 [(2.0, 1.0, 5)]]
    for history in histories:
        ledger = PrivacyLedger(delta=1e-5)
        for sigma, q, steps in history:
            for _ in range(steps):
                ledger.step(noise_multiplier=sigma, sample_rate=q)
        reference = RDPAccountant()
        reference.history = list(history)
        assert ledger.epsilon() == float(reference.get_epsilon(delta=1e-5))
        assert ledger.epsilon_after(noise_multiplier=0.9, sample_rate=0.3) > ledger.epsilon()


def test_prv_is_tighter_than_rdp_but_positive():
    rdp = compute_epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5, accountant="rdp")
    prv = compute_epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5, accountant="prv")
    assert 0 < prv < rdp


def test_ledger_composes_like_a_single_call_and_survives_state_dict():
    ledger = PrivacyLedger(delta=1e-5)
    for _ in range(40):
        ledger.step(noise_multiplier=1.1, sample_rate=0.1)
    restored = PrivacyLedger.from_state_dict(json.loads(json.dumps(ledger.state_dict())))
    direct = compute_epsilon(noise_multiplier=1.1, sample_rate=0.1, steps=40, delta=1e-5)
    assert restored.epsilon() == pytest.approx(direct)
    assert restored.steps == 40


def test_ledger_refuses_to_exceed_budget():
    ledger = PrivacyLedger(delta=1e-5, target_epsilon=2.0)
    steps = 0
    while ledger.can_take(noise_multiplier=2.0, sample_rate=0.1):
        ledger.step(noise_multiplier=2.0, sample_rate=0.1)
        steps += 1
    assert 0 < steps < 1000 and ledger.epsilon() <= 2.0
    with pytest.raises(RuntimeError, match="budget"):
        ledger.step(noise_multiplier=2.0, sample_rate=0.1)


def test_calibrated_sigma_meets_the_target():
    sigma = calibrate_noise_multiplier(target_epsilon=3.0, sample_rate=0.05, steps=300, delta=1e-5)
    assert compute_epsilon(noise_multiplier=sigma, sample_rate=0.05, steps=300, delta=1e-5) <= 3.0
    assert compute_epsilon(noise_multiplier=sigma * 0.95, sample_rate=0.05, steps=300, delta=1e-5) > 3.0


def test_round_up_never_rounds_down():
    assert round_up(1.001) == 1.01 and round_up(2.0) == 2.0 and round_up(0.123456, 3) == 0.124


def test_epsilon_cli_json_and_errors():
    out = subprocess.run([sys.executable, "-m", "trainer", "epsilon", "--noise-multiplier", "1.0", "--sample-rate",
                          "0.01", "--steps", "1000", "--delta", "1e-5", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["accountant"] == "rdp" and report["delta"] == 1e-5
    assert report["epsilon"] >= compute_epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5)
    bad = subprocess.run([sys.executable, "-m", "trainer", "epsilon", "--noise-multiplier", "1.0", "--sample-rate",
                          "1.5", "--steps", "10", "--delta", "1e-5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "sample rate" in bad.stderr and "Traceback" not in bad.stderr
