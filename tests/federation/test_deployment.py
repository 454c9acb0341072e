"""The real deployment on loopback (1 SuperLink, 3 SuperNodes, TLS, SuperNode auth, SecAgg+, no
runtime installs), started once for this module and used in order:

1. against the in-process simulator in test mode from the same seeds: per-round aggregates agree
   with the simulator's `RoundResult.aggregate` within the quantization bound, with noise on and
   off (two runs at once on the same nodes), and ε is the same;
2. a model version the nodes do not have: every node refuses and the run stops, saying so;
3. a hospital dies mid-round: SecAgg+ (with its timeout) unmasks the survivors' sum, whose noise
   is still at least σC because shares are sized for K_min survivors;
4. with that hospital gone, a run that needs all three stops with its reason. Nothing hangs.

Flower's own executor (a `flwr-clientapp` process per message, the deployment default) is checked
against the simulator in test_deployment_bad_input.py, on the deployment that also has bad nodes.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from federation.launch.deploy import Deployment, DeploySpec
from federation.launch.procs import alive
from federation.node_state import LEDGER_FILE
from tests.helpers.federation import HOSPITALS, NODE_ENV, TEST_APP, base_run, check_parity

pytestmark = pytest.mark.slow  # real multi-process deployments


@pytest.fixture(scope="module")
def fast_deployment(fed_data, certs, tmp_path_factory):
    """The fast setup (adaptive polling, a warm ClientApp process per node rung by its SuperNode);
    hospital 2 stalls on demand (tests/federation/flower_app/client.py)."""
    work = tmp_path_factory.mktemp("deployment")
    stall = work / "stall-trigger"
    spec = DeploySpec(workdir=work / "dep", certs=certs, hospital_dirs=[Path(d) for d in fed_data["hospitals"]],
                      test_mode=True, poll_interval=0.02, warm_worker=True, app_dir=TEST_APP,
                      node_env_extra=[NODE_ENV, NODE_ENV, {**NODE_ENV, "DOPAMINE_TEST_STALL_FILE": str(stall)}])
    with Deployment(spec) as dep:
        yield dep, stall
        pids = list(json.loads((dep.work / "pids.json").read_text())["pids"].values())
    assert not any(alive(pid) for pid, _ in pids), "a process the deployment started is still running"


def test_deployment_matches_simulator_noise_on_and_off(fed_data, fast_deployment):
    dep, _ = fast_deployment
    runs = {"noise": base_run(fed_data, seed=0, **{"noise-seed": 0, "noise-multiplier": 1.0}),
            "no-noise": base_run(fed_data, seed=0, **{"noise-seed": 0, "noise-multiplier": 0.0})}
    with ThreadPoolExecutor(2) as pool:   # two runs at once on the same SuperNodes
        futures = {name: pool.submit(dep.run, config, timeout=240) for name, config in runs.items()}
        results = {name: f.result() for name, f in futures.items()}
    worst = {name: check_parity(fed_data, r) for name, r in results.items()}
    assert worst["noise"] and worst["no-noise"]
    # Every hospital counted exactly the noised rounds in its own persisted accountant.
    for k in range(HOSPITALS):
        saved = json.loads((dep.work / f"hospital-{k}" / "state" / LEDGER_FILE).read_text())
        assert saved["ledger"]["history"] == results["noise"]["privacy"]["history"]


def test_no_flower_process_phones_out(fast_deployment):
    """Flower posts usage telemetry from every process unless told not to; every process the
    deployment started (SuperLink, SuperNodes, warm workers) runs with it off."""
    dep, _ = fast_deployment
    for name, proc in dep.procs.items():
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert b"FLWR_TELEMETRY_ENABLED=0" in environ, name


def test_a_model_version_the_nodes_lack_stops_the_run(fed_data, fast_deployment):
    dep, _ = fast_deployment
    stops = dep.run(base_run(fed_data, rounds=1, **{"model-version": "squeezenet1_1-dr/v0"}), timeout=120)
    assert stops["status"] == "stopped" and "model version mismatch" in stops["reason"], stops["reason"]


def test_node_killed_mid_round(fed_data, fast_deployment):
    dep, stall = fast_deployment
    sigma, clip = 1.0, 1.0
    config = base_run(fed_data, seed=0, **{"noise-multiplier": sigma, "min-participants": 2, "secagg-timeout": 12.0})
    stall.write_text("2:600")                          # hospital 2 will hang in round 2's training
    marker = dep.work / "hospital-2" / "state" / "stalled-round-2"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(dep.run, config, timeout=200)
        deadline = time.monotonic() + 400
        while not marker.exists() and time.monotonic() < deadline and not future.done():
            time.sleep(0.2)
        if future.done():
            early = future.result()
            pytest.fail(f"run ended before hospital-2 stalled: {early['status']}: {early['reason']}")
        assert marker.exists(), "hospital-2 never reached round 2's training"
        dep.kill_node(2)                      # SIGKILL its SuperNode and its ClientApp process
        killed_at = time.monotonic()
        results = future.result()
    assert results["status"] == "completed", results["reason"]
    assert [r["participants"] for r in results["rounds"]] == [3, 2]
    assert time.monotonic() - killed_at < 120, "the round waited for the dead node past its timeout"
    trace = np.load(Path(results["config"]["out_dir"]) / "trace.npz")["aggregates"]
    # Shares are sized for K_min = 2: three hospitals add noise σC·√(3/2), two survivors σC (the
    # clipped gradients add little spread next to it at these sizes).
    assert np.std(trace[0]) == pytest.approx(sigma * clip * np.sqrt(HOSPITALS / 2), rel=0.05)
    assert np.std(trace[1]) == pytest.approx(sigma * clip, rel=0.05)
    assert np.std(trace[1]) >= 0.99 * sigma * clip
    assert results["privacy"]["steps"] == 2   # the aborted-or-not round counts


def test_a_round_below_k_min_stops_with_its_reason(fed_data, fast_deployment):
    dep, _ = fast_deployment
    if "hospital-2" in dep.procs:   # normally gone already (test_node_killed_mid_round)
        dep.kill_node(2)
    # The SuperLink may still list the dead node for a while; SecAgg+'s first stage then waits for it
    # (secagg-timeout) and finds fewer than K_min. Either way the run stops within seconds.
    strict = base_run(fed_data, **{"min-participants": 3, "rounds": 1, "node-wait": 5.0, "secagg-timeout": 8.0})
    stopped = dep.run(strict, timeout=120)
    assert stopped["status"] == "stopped" and "K_min=3" in stopped["reason"], stopped["reason"]
