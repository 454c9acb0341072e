"""The real deployment on loopback (1 SuperLink, 3 SuperNodes, TLS, SuperNode auth, SecAgg+, no
runtime installs) against the in-process simulator in test mode from the same seed: per-round
aggregates agree within the quantization bound, with noise on and off, and ε is the same."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from federation.launch.deploy import Deployment, DeploySpec
from federation.node_state import LEDGER_FILE
from federation.secagg import aggregate_error_bound
from trainer.privacy import round_up

from tests.helpers.federation import HOSPITALS, TEST_APP, base_run, simulator_aggregates

pytestmark = pytest.mark.slow  # real multi-process deployments


def _check_parity(fed_data: dict, results: dict) -> list[float]:
    assert results["status"] == "completed", results["reason"]
    assert [r["participants"] for r in results["rounds"]] == [HOSPITALS, HOSPITALS]
    trace = dict(np.load(Path(results["config"]["out_dir"]) / "trace.npz"))
    sim, ledger = simulator_aggregates(fed_data, results["config"], trace)
    bound = aggregate_error_bound(results["prescale"]["quantization_step"], HOSPITALS)
    worst = []
    for fed, expected in zip(trace["aggregates"], sim):
        error = np.abs(fed - expected)
        # Quantization (stochastic rounding, < 1 step per hospital) plus float32 rounding of S.
        assert np.all(error <= bound + 1e-6 * (1 + np.abs(expected))), f"max error {error.max()} > {bound}"
        worst.append(float(error.max()))
    if results["noise_multiplier"] > 0:
        assert results["privacy"]["history"] == [list(h) for h in ledger.history]
        assert results["privacy"]["epsilon"] == round_up(ledger.epsilon())
        assert results["privacy"]["seeded"] is True
    return worst


def test_deployment_matches_simulator_noise_on_and_off(fed_data, certs, tmp_path):
    """The fast setup (adaptive polling, a warm ClientApp process per node rung by its SuperNode)."""
    spec = DeploySpec(workdir=tmp_path / "dep", certs=certs, hospital_dirs=[Path(d) for d in fed_data["hospitals"]],
                      test_mode=True, poll_interval=0.02, warm_worker=True, app_dir=TEST_APP)
    with Deployment(spec) as dep:
        runs = {"noise": base_run(fed_data, seed=0, **{"noise-seed": 0, "noise-multiplier": 1.0}),
                "no-noise": base_run(fed_data, seed=0, **{"noise-seed": 0, "noise-multiplier": 0.0})}
        with ThreadPoolExecutor(2) as pool:   # two runs at once on the same SuperNodes
            futures = {name: pool.submit(dep.run, config, timeout=240) for name, config in runs.items()}
            results = {name: f.result() for name, f in futures.items()}
        pids = list(json.loads((dep.work / "pids.json").read_text())["pids"].values())
    worst = {name: _check_parity(fed_data, r) for name, r in results.items()}
    assert worst["noise"] and worst["no-noise"]
    # Every hospital counted exactly the noised rounds in its own persisted accountant.
    for k in range(HOSPITALS):
        saved = json.loads((tmp_path / "dep" / f"hospital-{k}" / "state" / LEDGER_FILE).read_text())
        assert saved["ledger"]["history"] == results["noise"]["privacy"]["history"]
    # Nothing this test started is left running.
    from federation.launch.procs import alive
    assert not any(alive(pid) for pid, _ in pids)


def test_flower_clientapp_processes_match_simulator(fed_data, certs, tmp_path):
    """Flower's own executor (a `flwr-clientapp` process per message) gives the same aggregates."""
    spec = DeploySpec(workdir=tmp_path / "dep", certs=certs, hospital_dirs=[Path(d) for d in fed_data["hospitals"]],
                      test_mode=True, poll_interval=0.05, app_dir=TEST_APP)
    with Deployment(spec) as dep:
        results = dep.run(base_run(fed_data, seed=0, **{"noise-seed": 0, "noise-multiplier": 1.0}), timeout=240)
    _check_parity(fed_data, results)
