"""The device's RDP accountant against Opacus, and the per-photo-set budget built on it."""
import itertools
import warnings

import pytest

from edge_client.budget import Budget, BudgetExceeded, photo_set_id
from edge_client.rdp import calibrate_noise_multiplier, compute_epsilon, epsilon_of_history


@pytest.mark.parametrize("sigma,q", list(itertools.product([0.6, 1.0, 2.1, 5.0], [0.005, 0.1, 0.5, 1.0])))
def test_epsilon_matches_opacus_within_one_percent(sigma, q):
    from trainer.privacy.accounting import compute_epsilon as reference

    for steps, delta in itertools.product([1, 50, 2000], [1e-5, 1e-3]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus warns when the best order is at the grid's edge
            ref = reference(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta, accountant="rdp")
        ours = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)
        assert ours == pytest.approx(ref, rel=0.01), (sigma, q, steps, delta)


def test_composition_and_calibration():
    from trainer.privacy.accounting import compute_epsilon as reference

    mixed = epsilon_of_history([(1.1, 0.25, 30), (2.0, 0.5, 50)], delta=1e-5)
    assert mixed > compute_epsilon(noise_multiplier=1.1, sample_rate=0.25, steps=30, delta=1e-5)
    sigma = calibrate_noise_multiplier(target_epsilon=5.0, sample_rate=0.5, steps=50, delta=1e-5)
    eps = reference(noise_multiplier=sigma, sample_rate=0.5, steps=50, delta=1e-5, accountant="rdp")
    assert 4.9 < eps <= 5.0 * 1.001
    with pytest.raises(ValueError, match="unreachable"):
        calibrate_noise_multiplier(target_epsilon=1.0, sample_rate=0.5, steps=50, delta=1e-5,
                                   history=[(0.5, 1.0, 100)])
    for bad in (dict(noise_multiplier=-1.0, sample_rate=0.1, steps=1, delta=1e-5),
                dict(noise_multiplier=1.0, sample_rate=1.5, steps=1, delta=1e-5),
                dict(noise_multiplier=1.0, sample_rate=0.1, steps=1, delta=0.0)):
        with pytest.raises(ValueError):
            compute_epsilon(**bad)


def test_budget_is_shared_by_modes_survives_reopening_and_counts_overlaps(tmp_path):
    photos = [f"{i:064x}" for i in range(20)]
    b = Budget(tmp_path)
    sid = b.register(photos, budget=8.0)
    assert sid == photo_set_id(list(reversed(photos)))  # order does not matter
    b.record(sid, mode="personal", noise_multiplier=4.0, sample_rate=0.5, steps=50, clipping_norm=1.0, model_version=1)
    b.close()
    b = Budget(tmp_path)  # a new process / a new model version: the spend is still there
    st = b.status(sid)
    assert st.rounds == 1 and st.spent == pytest.approx(compute_epsilon(noise_multiplier=4.0, sample_rate=0.5,
                                                                        steps=50, delta=1e-5))
    b.record(sid, mode="federated", noise_multiplier=4.0, sample_rate=0.5, steps=50, clipping_norm=1.0,
             model_version=2)
    with pytest.raises(BudgetExceeded, match="over its budget"):
        b.record(sid, mode="federated", noise_multiplier=4.0, sample_rate=0.5, steps=50, clipping_norm=1.0,
                 model_version=2)
    assert b.status(sid).rounds == 2  # the refused round was not charged
    # one more photo is another set, but its old photos carry their spend along
    bigger = b.register(photos + [f"{99:064x}"], budget=8.0)
    assert bigger != sid and b.status(bigger).spent == pytest.approx(b.status(sid).spent)
    fresh = b.register([f"{i + 100:064x}" for i in range(20)], budget=8.0)
    assert b.status(fresh).spent == 0.0
    with pytest.raises(BudgetExceeded, match="fixed"):
        b.register(photos, budget=50.0)  # a budget is never raised after training started
    b.close()
