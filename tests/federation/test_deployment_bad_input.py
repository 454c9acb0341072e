"""Bad input on a real deployment: a missing certificate, a wrong SuperLink address, an
unregistered node, a node with no data, a model version the nodes do not have. Each gives a
clear one-line reason; the federation goes on without the node or stops cleanly, and nothing
started is left running."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from federation.launch.deploy import DeployError, Deployment, DeploySpec
from federation.launch.procs import alive, free_port
from tests.helpers.federation import base_run

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
    spec = DeploySpec(workdir=tmp_path / "w", certs=certs, hospital_dirs=[Path(d) for d in fed_data["hospitals"]],
                      superlink_address=f"127.0.0.1:{free_port()}", connect_timeout=5.0)
    dep = Deployment(spec)
    with pytest.raises(DeployError, match=r"hospital-\d exited: .*(?i:failed|connect)|SuperNodes came online"):
        with dep:
            pass
    assert not dep.procs and not any(alive(pid) for pid in dep._recorded_pids())


def test_unregistered_node_no_data_and_model_version(fed_data, certs, tmp_path):
    empty = tmp_path / "empty-hospital"
    empty.mkdir()
    dirs = [Path(fed_data["hospitals"][0]), Path(fed_data["hospitals"][1]), empty, Path(fed_data["hospitals"][2])]
    spec = DeploySpec(workdir=tmp_path / "dep", certs=certs, hospital_dirs=dirs, unregistered=(3,),
                      poll_interval=0.02, warm_worker=True)
    with Deployment(spec) as dep:
        # The unregistered hospital never joins (3 online, not 4) and its log says why.
        assert dep.online_nodes() == 3
        dep.procs["hospital-3"].wait(timeout=30)
        log = (dep.work / "hospital-3" / "supernode.log").read_text(errors="replace").lower()
        assert "failed to activate supernode" in log          # Flower's exit code 305, code 2004
        assert dep.procs["hospital-3"].returncode != 0        # it exited instead of retrying forever

        # The hospital with no data refuses with its reason; the two others carry the round.
        goes_on = dep.run(base_run(fed_data, rounds=1, **{"min-participants": 2}), timeout=150)
        assert goes_on["status"] == "completed", goes_on["reason"]
        assert goes_on["rounds"][0]["participants"] == 2
        assert any("holds no patients" in f or "data-dir" in f for f in goes_on["rounds"][0]["failures"])

        # A model version the nodes do not have: every node refuses; the run stops, saying so.
        stops = dep.run(base_run(fed_data, rounds=1, **{"model-version": "squeezenet1_1-dr/v0",
                                                        "min-participants": 2}), timeout=120)
        assert stops["status"] == "stopped" and "model version mismatch" in stops["reason"], stops["reason"]
