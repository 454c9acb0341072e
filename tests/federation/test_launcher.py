"""The launcher stops exactly what it started, by PID: children included, and never a process
that merely reuses a recorded PID."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from federation.launch.deploy import Deployment
from federation.launch.deploy_cli import parse_overrides
from federation.launch.procs import alive, descendants, start, start_time, stop_pids


def _wait_children(pid: int, count: int) -> list[int]:
    for _ in range(50):
        kids = descendants(pid)
        if len(kids) >= count:
            return kids
        time.sleep(0.1)
    return descendants(pid)


def test_stop_pids_takes_the_children_too(tmp_path):
    proc = start(["bash", "-c", "sleep 60 & sleep 60 & wait"], log=tmp_path / "log", env={"PATH": "/usr/bin:/bin"})
    kids = _wait_children(proc.pid, 2)
    assert len(kids) == 2
    signalled = stop_pids([proc.pid], grace=3)
    proc.wait(timeout=5)
    assert set(kids) <= set(signalled)
    assert not any(alive(p) for p in [proc.pid, *kids])


def test_down_stops_recorded_processes_and_spares_reused_pids(fed_data, certs, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    mine = subprocess.Popen(["sleep", "60"])
    stranger = subprocess.Popen(["sleep", "60"])   # a PID recorded with another start time
    record = {"port": 1, "spec": {"certs": str(certs), "hospital_dirs": fed_data["hospitals"],
                                  "test_mode": False, "poll_interval": 0.0},
              "pids": {"superlink": [mine.pid, start_time(mine.pid)],
                       "hospital-0": [stranger.pid, start_time(stranger.pid) + 1]}}
    (work / "pids.json").write_text(json.dumps(record))
    try:
        Deployment.attach(work).down()
        mine.wait(timeout=10)
        assert alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


def test_attach_without_a_deployment_says_so(tmp_path):
    from federation.launch.deploy import DeployError
    with pytest.raises(DeployError, match="no deployment recorded there"):
        Deployment.attach(tmp_path)


def test_run_config_overrides_parse_as_toml():
    assert parse_overrides('rounds=3 eval-data="/x y" augment=true delta=1e-4') == {
        "rounds": 3, "eval-data": "/x y", "augment": True, "delta": 1e-4}
    with pytest.raises(ValueError, match="not key=value"):
        parse_overrides("rounds")


def test_fast_flag_turns_on_adaptive_polling_and_the_warm_worker(tmp_path):
    import argparse

    from federation.launch.deploy_cli import _spec, add_commands
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    common = ["up", "--workdir", str(tmp_path), "--certs", "c", "--data-root", "d", "--hospitals", "3"]
    fast = _spec(parser.parse_args([*common, "--fast"]))
    assert (fast.poll_interval, fast.warm_worker, fast.superlink_db) == (0.02, True, False)
    stock = _spec(parser.parse_args([*common, "--superlink-db"]))
    assert (stock.poll_interval, stock.warm_worker, stock.superlink_db) == (0.0, False, True)
    chosen = _spec(parser.parse_args([*common, "--fast", "--poll-interval", "0.1"]))
    assert (chosen.poll_interval, chosen.warm_worker) == (0.1, True)
    with pytest.raises(ValueError, match="--poll-interval must be > 0"):
        _spec(parser.parse_args([*common, "--poll-interval", "-1"]))


def test_warm_worker_with_a_taken_doorbell_port_says_so():
    import sys

    from federation.launch.doorbell import Doorbell, free_udp_port
    bell = Doorbell(free_udp_port())
    try:
        out = subprocess.run([sys.executable, "-m", "federation.launch.warm_worker", "127.0.0.1:1", "--doorbell",
                              str(bell.port)], capture_output=True, text=True, timeout=120)
    finally:
        bell.close()
    assert out.returncode == 1 and "doorbell: cannot listen" in out.stderr and "Traceback" not in out.stderr


def test_waiting_for_a_run_asks_flower_only_when_results_say_it_ended(tmp_path):
    """`flwr list` costs a process a call: it is asked on the results file's final status, or
    every `recheck` seconds for a run that dies without results; a run that never ends times out."""
    import threading

    from federation.launch.deploy import wait_for_run

    results, asked = tmp_path / "results.json", []
    results.write_text(json.dumps({"status": "running"}))

    def flower_status() -> str:
        asked.append(time.monotonic())
        final = json.loads(results.read_text())["status"] != "running"
        return "finished:completed" if final else "running"

    threading.Timer(1.0, lambda: results.write_text(json.dumps({"status": "completed"}))).start()
    start = time.monotonic()
    assert wait_for_run(flower_status, results, timeout=30, recheck=10) == "finished:completed"
    assert len(asked) == 1 and 0.9 < time.monotonic() - start < 5   # asked once, right after the file said so

    asked.clear()   # no results file at all (the ServerApp died): Flower is asked every `recheck` s
    assert wait_for_run(lambda: asked.append(1) or "running", tmp_path / "none.json", timeout=2.0, recheck=0.5) is None
    assert 2 <= len(asked) <= 5   # every 0.5 s; polling at the file's 0.2 s would ask ~10 times
