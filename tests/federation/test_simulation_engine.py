"""`flwr run` on Flower's simulation engine with K = 3 virtual nodes runs the same app (SecAgg+,
hospital guards, trainer steps) and reproduces the in-process simulator in test mode."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federation.secagg import aggregate_error_bound
from federation.launch.simulate import run_simulation
from tests.helpers.federation import HOSPITALS, NODE_ENV, TEST_APP, base_run, simulator_aggregates

pytestmark = pytest.mark.slow  # real multi-process deployments


@pytest.fixture(autouse=True)
def node_threads(monkeypatch):
    """The virtual nodes (subprocesses) run torch on the simulator's thread count (parity)."""
    monkeypatch.setenv("OMP_NUM_THREADS", NODE_ENV["OMP_NUM_THREADS"])


def test_flwr_run_on_simulation_engine(fed_data, tmp_path):
    results = run_simulation(data_root=fed_data["root"], hospitals=HOSPITALS, workdir=tmp_path / "sim",
                             config=base_run(fed_data, seed=0, rounds=1, **{"noise-seed": 0, "eval-data": fed_data["eval"]}),
                             timeout=240, app_dir=TEST_APP)
    assert results["status"] == "completed", results["reason"]
    assert results["rounds"][0]["participants"] == HOSPITALS
    assert 0.0 <= results["rounds"][0]["eval"]["accuracy"] <= 1.0     # evaluated at the server only
    trace = dict(np.load(Path(results["config"]["out_dir"]) / "trace.npz"))
    sim, _ = simulator_aggregates(fed_data, results["config"], trace)
    bound = aggregate_error_bound(results["prescale"]["quantization_step"], HOSPITALS)
    assert np.abs(trace["aggregates"][0] - sim[0]).max() <= bound + 1e-6 * (1 + np.abs(sim[0]).max())
    for k in range(HOSPITALS):   # each virtual node kept its own accountant in its own state dir
        assert (tmp_path / "sim" / "state" / f"state-{k}" / "privacy_ledger.json").is_file()


@pytest.mark.parametrize("mode", ["fedavg", "fl-parallel-dp"])
def test_weight_averaging_modes_match_simulator(fed_data, tmp_path, mode):
    """fedavg / fl-parallel-dp: each node runs the trainer's `local_training` on its own hospital;
    SecAgg+ averages the weights (weighted by declared sizes) as the simulator's round does."""
    import torch
    from edge_client.preprocess import PreprocessConfig
    from federation.config import RunConfig
    from federation.task import flat_weights, load_hospital
    from trainer.checkpoint import load_checkpoint
    from trainer.data.augment import Augment
    from trainer.model import build_model
    from trainer.modes.fedavg import FedAvgMode, ParallelDPMode

    values = base_run(fed_data, seed=0, rounds=1, mode=mode, **{"noise-seed": 0, "noise-multiplier": 1.0,
                                                               "learning-rate": 0.05})
    results = run_simulation(data_root=fed_data["root"], hospitals=HOSPITALS, workdir=tmp_path / "sim",
                             config=values, timeout=240, app_dir=TEST_APP)
    assert results["status"] == "completed", results["reason"]
    federated, _ = load_checkpoint(Path(results["config"]["out_dir"]) / "model.pt")

    run = RunConfig.from_flower(values)
    hospitals = [load_hospital(d, image_size=run.image_size) for d in fed_data["hospitals"]]
    config = run.train_config()
    torch.manual_seed(0)
    model = build_model(5, dropout=0.0)
    cls = ParallelDPMode if mode == "fl-parallel-dp" else FedAvgMode
    sim = cls(model=model, hospitals=hospitals, config=config,
              augment=Augment(PreprocessConfig(image_size=run.image_size)))
    sim.run_round(0)   # the simulator's round: every hospital from w_0, weights averaged by N_k
    difference = (flat_weights(federated) - sim.weights()).abs().max().item()
    # SecAgg+ quantization of w/8 (one step ~3e-5 per hospital) plus float reordering.
    assert difference < 1e-4, difference
