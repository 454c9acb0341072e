"""`flwr run` on Flower's simulation engine with K = 3 virtual nodes runs the same app (SecAgg+,
hospital guards, trainer steps) and reproduces the in-process simulator in test mode."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federation.secagg import aggregate_error_bound
from federation.simulate import run_simulation
from fed_helpers import HOSPITALS, base_run, simulator_aggregates

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_flwr_run_on_simulation_engine(fed_data, tmp_path):
    results = run_simulation(data_root=fed_data["root"], hospitals=HOSPITALS, workdir=tmp_path / "sim",
                             config=base_run(fed_data, seed=0, rounds=1, **{"eval-data": fed_data["eval"]}),
                             timeout=240)
    assert results["status"] == "completed", results["reason"]
    assert results["rounds"][0]["participants"] == HOSPITALS
    assert 0.0 <= results["rounds"][0]["eval"]["accuracy"] <= 1.0     # evaluated at the server only
    trace = dict(np.load(Path(results["config"]["out_dir"]) / "trace.npz"))
    sim, _ = simulator_aggregates(fed_data, results["config"], trace)
    bound = aggregate_error_bound(results["prescale"]["quantization_step"], HOSPITALS)
    assert np.abs(trace["aggregates"][0] - sim[0]).max() <= bound + 1e-6 * (1 + np.abs(sim[0]).max())
    for k in range(HOSPITALS):   # each virtual node kept its own accountant in its own state dir
        assert (tmp_path / "sim" / "state" / f"state-{k}" / "privacy_ledger.json").is_file()
