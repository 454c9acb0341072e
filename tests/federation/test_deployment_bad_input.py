"""Bad input on a real deployment: a missing certificate, a wrong SuperLink address, an
unregistered node, a node with no data (a model version the nodes lack is in test_deployment.py).
Each gives a clear one-line reason; the federation goes on without the node or stops cleanly, and nothing
started is left running. The deployment with bad nodes runs Flower's default executor, so its
good round is also the parity check of that executor against the simulator."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from federation.launch.deploy import DeployError, Deployment, DeploySpec
from federation.launch.procs import alive, free_port
from tests.helpers.federation import HOSPITALS, NODE_ENV, TEST_APP, base_run, check_parity

pytestmark = pytest.mark.slow  # real multi-process deployments
REPO = Path(__file__).resolve().parents[2]


def test_missing_certificate_refused_before_anything_starts(fed_data, certs, tmp_path):
    partial = tmp_path / "certs"
    shutil.copytree(certs, partial)
    (partial / "server.key").unlink()
    with pytest.raises(DeployError, match=r"missing certificate .*server\.key: run scripts/make_certs\.sh"):
        Deployment(DeploySpec(workdir=tmp_path / "w", certs=partial, hospital_dirs=fed_data["hospitals"]))
    out = subprocess.run([sys.executable, "-m", "federation", "deploy", "--workdir", str(tmp_path / "w"),
                          "--certs", str(partial), "--data-root", str(fed_data["root"]), "--hospitals", "3"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    assert out.stdout.strip().startswith("error: missing certificate")


def test_wrong_superlink_address_fails_cleanly(fed_data, certs, tmp_path):
    spec = DeploySpec(workdir=tmp_path / "w", certs=certs, hospital_dirs=[Path(fed_data["hospitals"][0])],
                      superlink_address=f"127.0.0.1:{free_port()}", connect_timeout=5.0)
    dep = Deployment(spec)
    with pytest.raises(DeployError, match=r"hospital-\d exited: .*(?i:failed|connect)|SuperNodes came online"):
        with dep:
            pass
    assert not dep.procs and not any(alive(pid) for pid in dep._recorded_pids())


def test_default_executor_with_an_unregistered_node_and_one_with_no_data(fed_data, certs, tmp_path):
    """Flower's own executor (a `flwr-clientapp` process per message, what `deploy` runs without
    --warm-worker) with three good hospitals, one with no data and one whose key is not registered."""
    empty = tmp_path / "empty-hospital"
    empty.mkdir()
    good = [Path(d) for d in fed_data["hospitals"]]
    spec = DeploySpec(workdir=tmp_path / "dep", certs=certs, hospital_dirs=[*good, empty, good[0]],
                      unregistered=(4,), test_mode=True, poll_interval=0.05, app_dir=TEST_APP,
                      node_env_extra=[NODE_ENV] * 5)
    with Deployment(spec) as dep:
        # The unregistered hospital never joins (4 online, not 5) and its log says why.
        assert dep.online_nodes() == 4
        dep.procs["hospital-4"].wait(timeout=30)
        log = (dep.work / "hospital-4" / "supernode.log").read_text(errors="replace").lower()
        assert "failed to activate supernode" in log          # Flower's exit code 305, code 2004
        assert dep.procs["hospital-4"].returncode != 0        # it exited instead of retrying forever

        # The hospital with no data refuses with its reason; the three others carry the round, and
        # their sum is the simulator's (test mode, same seeds) within the quantization bound.
        goes_on = dep.run(base_run(fed_data, seed=0, rounds=1, hospitals=HOSPITALS + 1,
                                   **{"min-participants": HOSPITALS, "noise-seed": 0, "noise-multiplier": 1.0}),
                          timeout=240)
        check_parity(fed_data, goes_on, rounds=1)
        assert any("holds no patients" in f or "data-dir" in f for f in goes_on["rounds"][0]["failures"])
