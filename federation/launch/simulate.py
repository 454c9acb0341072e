"""`flwr run` on Flower's simulation engine with K virtual nodes, the same app as a deployment.

Flower's `flwr run` with the default `local` connection starts a background SuperLink on fixed
ports and never stops it; here we start our own simulation SuperLink (loopback, a free port,
runtime dependency installation disabled) under a temporary FLWR_HOME and stop it by PID.
Virtual node k reads `<data-root>/hospital-<k>` (run config `sim-data-root`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from federation.launch.deploy import APP_DIR, BIN, DeployError, _last_line, _toml, flower_env, wait_for_run
from edge_client.fileio import atomic_write
from federation.launch.procs import alive, free_port, start, stop_pids

CONNECTION = "dopamine-sim"


def run_simulation(*, data_root: str | Path, hospitals: int, workdir: str | Path, config: dict,
                   timeout: float = 600, app_dir: str | Path = APP_DIR) -> dict:
    """Run the app on the simulation engine; returns results.json (plus `run_id`, `flwr_status`).

    Raises:
        DeployError: the engine did not start, the run did not start, or it did not finish in time.
    """
    import subprocess
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    home, port = work / "flwr-home", free_port()
    home.mkdir(exist_ok=True)
    atomic_write(home / "config.toml", (
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n').encode())
    env = flower_env(home)   # same PATH/PYTHONPATH/no-install settings as a deployment
    config = {"sim-data-root": str(Path(data_root).resolve()), "sim-state-root": str(work / "state"),
              "out-dir": str(work / "out"), "hospitals": hospitals, **config}
    link = start([str(BIN / "flower-superlink"), "--insecure", "--simulation", "--isolation", "subprocess",
                  "--host", "127.0.0.1", "--port", str(port), "--disable-runtime-dependency-installation"],
                 log=work / "superlink.log", env=env)
    try:
        _wait_health(port, link.pid, timeout=60)
        overrides = " ".join(f"{k}={_toml(v)}" for k, v in config.items())
        cli = lambda *args: subprocess.run([str(BIN / "flwr"), *args], env=env | {"COLUMNS": "200"},
                                           capture_output=True, text=True, timeout=60)
        started = cli("run", str(app_dir), CONNECTION, "--run-config", overrides,
                      "--federation-config", f"num-supernodes={hospitals}", "--format", "json")
        try:
            run_id = int(json.loads(started.stdout)["run-id"])
        except (ValueError, KeyError, TypeError):
            raise DeployError(f"flwr run (simulation) failed: {_last_line(started)}") from None

        def flower_status() -> str:
            out = cli("list", CONNECTION, "--run-id", str(run_id), "--format", "json")
            try:
                return str(json.loads(out.stdout)["runs"][0]["status"])
            except (ValueError, KeyError, IndexError, TypeError):
                return "unknown"

        results_path = Path(config["out-dir"]) / "results.json"
        status = wait_for_run(flower_status, results_path, timeout=timeout)
        if status is None:
            raise DeployError(f"simulation run {run_id} did not finish within {timeout:.0f} s")
        if not results_path.is_file():
            raise DeployError(f"simulation run {run_id} {status} without results: see {work / 'superlink.log'}")
        results = json.loads(results_path.read_text())
        results.update(run_id=run_id, flwr_status=status)
        return results
    finally:
        stop_pids([link.pid])
        link.wait(timeout=10)


def _wait_health(port: int, pid: int, *, timeout: float) -> None:
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise DeployError("simulation SuperLink exited at start")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise DeployError(f"simulation SuperLink did not answer on 127.0.0.1:{port} within {timeout:.0f} s")
