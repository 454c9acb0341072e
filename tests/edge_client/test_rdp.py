"""The device's RDP accountant against Opacus, and the per-patient budget built on it."""
import itertools
import warnings
from pathlib import Path

import pytest

from edge_client.budget import Budget, BudgetExceeded
from edge_client.labels import LabelledPhoto
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


def _photos(ids, patient_of, rows_from=2):
    return [LabelledPhoto(Path(f"{i}.png"), 0, patient_of(i), f"{i:064x}", rows_from + n) for n, i in enumerate(ids)]


def test_budget_is_shared_by_modes_survives_reopening_and_is_kept_per_patient(tmp_path):
    photos = _photos(range(20), lambda i: f"p{i // 2}")  # 10 patients, two photos each
    one = dict(noise_multiplier=4.0, sample_rate=0.5, steps=50, clipping_norm=1.0)
    b = Budget(tmp_path)
    charge = b.record(photos, mode="personal", model_version=1, budget=8.0, **one)
    assert charge.num_units == 10 and charge.units[:4] == (0, 0, 1, 1) and charge.budget == 8.0
    b.close()
    b = Budget(tmp_path)  # a new process / a new model version: the spend is still there
    st = b.status(photos)
    assert (st.rounds, st.patients, st.fixed, st.budget) == (1, 10, True, 8.0)
    assert st.spent == pytest.approx(compute_epsilon(noise_multiplier=4.0, sample_rate=0.5, steps=50, delta=1e-5))
    b.record(photos, mode="federated", model_version=2, **one)
    with pytest.raises(BudgetExceeded, match="over its budget"):
        b.record(photos, mode="federated", model_version=2, **one)
    assert b.status(photos).rounds == 2  # the refused round was not charged
    # the same patients through other files: their spend comes along; a new patient starts at zero
    later = _photos([100, 101, 102], lambda i: {100: "p0", 101: "P0", 102: "new"}[i])
    st = b.status(later)
    assert [p.rounds for p in st.per_patient] == [2, 0] and st.spent == pytest.approx(b.status(photos).spent)
    with pytest.raises(BudgetExceeded, match="fixed"):
        b.check(photos, budget=50.0, **{k: v for k, v in one.items() if k != "clipping_norm"})  # never raised
    b.close()
