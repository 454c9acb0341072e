"""A hospital dies mid-round: SecAgg+ (with its timeout) unmasks the survivors' sum, whose noise is
still at least σC because shares are sized for K_min survivors; a round below K_min stops the run
with its reason. Nothing hangs."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from federation.launch.deploy import Deployment, DeploySpec
from tests.helpers.federation import HOSPITALS, TEST_APP, base_run

pytestmark = pytest.mark.slow  # real multi-process deployments


def test_node_killed_mid_round(fed_data, certs, tmp_path):
    spec = DeploySpec(workdir=tmp_path / "dep", certs=certs, hospital_dirs=[Path(d) for d in fed_data["hospitals"]],
                      test_mode=True, poll_interval=0.02, warm_worker=True, app_dir=TEST_APP,
                      node_env_extra=[{}, {}, {"DOPAMINE_TEST_STALL": "2:600"}])
    sigma, clip = 1.0, 1.0
    with Deployment(spec) as dep:
        config = base_run(fed_data, seed=0, **{"noise-multiplier": sigma, "min-participants": 2,
                                               "secagg-timeout": 20.0})
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

        # With the dead hospital gone, a run that needs all three stops with the reason.
        strict = base_run(fed_data, **{"min-participants": 3, "rounds": 1, "node-wait": 5.0,
                                       "secagg-timeout": 20.0})
        stopped = dep.run(strict, timeout=120)
        assert stopped["status"] == "stopped" and "K_min=3" in stopped["reason"], stopped["reason"]
