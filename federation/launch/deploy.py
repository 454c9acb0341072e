"""A real Flower deployment on one machine: `flower-superlink` + K `flower-supernode` processes on
127.0.0.1, TLS from a (throw-away) CA, SuperNode authentication with registered keys, runtime
dependency installation disabled. Everything started is stopped by PID, also on failure.

    with Deployment(spec) as dep:        # up(): SuperLink, registration, SuperNodes
        results = dep.run({"rounds": 2}) # flwr run federation <connection>, waits for the end
"""
from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from federation.launch.doorbell import free_udp_port
from edge_client.fileio import atomic_write
from federation.launch.procs import alive, free_port, start, start_time, stop_pids

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "federation"
BIN = Path(sys.executable).parent
CONNECTION = "dopamine-local"


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment of every Flower process: its own FLWR_HOME, the repo on PYTHONPATH (the app's
    code is installed, never fetched), no runtime installs, no update checks, no telemetry (Flower
    posts a usage event to telemetry.flower.ai from its processes unless told not to: a hospital
    node must not call out, and offline a ClientApp's exit can wait up to 4 s for the post).
    (SuperExec's task poll stays at its 1 s default: it only delays a run's start, and polling it
    faster costs the SuperLink a request each time.)"""
    env = dict(os.environ)
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "FLWR_HOME": str(flwr_home),
                "PYTHONPATH": str(REPO), "FLWR_DISABLE_UPDATE_CHECK": "1",
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "PYTHONUNBUFFERED": "1",
                "FLWR_TELEMETRY_ENABLED": "0"})
    return env


class DeployError(RuntimeError):
    """The deployment could not start or a run failed; the message says which part and why."""


@dataclass
class DeploySpec:
    workdir: Path                       # logs, pids.json, FLWR_HOME dirs, node state dirs
    certs: Path                         # scripts/make_certs.sh output
    hospital_dirs: list[Path]           # one data folder per hospital
    test_mode: bool = False             # nodes accept a seed: tests only, never a deployment
    port: int | None = None             # SuperLink HTTP port (Fleet + Control + Runtime); None: free
    node_extra: list[dict] = field(default_factory=list)   # extra node config per hospital (tests)
    unregistered: tuple[int, ...] = ()  # hospitals whose keys are NOT registered (tests)
    connect_timeout: float = 60.0       # a SuperNode gives up reaching the SuperLink after this
    superlink_address: str | None = None   # SuperNodes dial this (default 127.0.0.1:port)
    poll_interval: float = 0.0          # >0: SuperNodes and ServerApp poll this often (polling.py)
    warm_worker: bool = False           # one long-lived ClientApp process per node (warm_worker.py)
    superlink_db: bool = False          # SuperLink state in SQLite (workdir/superlink.db), not in memory
    app_dir: Path = APP_DIR             # the Flower app `flwr run` builds (tests use a test-only copy)
    node_env_extra: list[dict] = field(default_factory=list)   # extra environment per hospital (tests)

    def check(self) -> None:
        for name in ("ca.crt", "server.crt", "server.key"):
            if not (self.certs / name).is_file():
                raise DeployError(f"missing certificate {self.certs / name}: run scripts/make_certs.sh "
                                  f"{self.certs} {len(self.hospital_dirs)}")
        for k, data in enumerate(self.hospital_dirs):
            if not (self.certs / f"hospital-{k}" / "auth_key").is_file():
                raise DeployError(f"missing hospital key {self.certs / f'hospital-{k}' / 'auth_key'}")
            if not Path(data).is_dir():
                raise DeployError(f"hospital {k} data-dir {data} does not exist")


class Deployment:
    def __init__(self, spec: DeploySpec) -> None:
        spec.check()
        self.spec = spec
        self.work = Path(spec.workdir).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = spec.port or free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.cli_home = self.work / "flwr-home"

    # -- environment --------------------------------------------------------------------------
    def env(self, flwr_home: Path) -> dict[str, str]:
        return flower_env(flwr_home)

    def node_env(self, flwr_home: Path) -> dict[str, str]:
        """A hospital's environment here: the K nodes share this machine, so each gets its share of
        the cores for torch (unless OMP_NUM_THREADS is set). Without this every node's OpenMP
        threads spin-wait against the others' and a round takes several times longer."""
        env = self.env(flwr_home)
        threads = max(1, (os.cpu_count() or 1) // max(1, len(self.spec.hospital_dirs)))
        env.setdefault("OMP_NUM_THREADS", str(threads))
        return env

    def hospital_env(self, k: int) -> dict[str, str]:
        env = self.node_env(self.work / f"hospital-{k}" / "flwr-home")
        if k < len(self.spec.node_env_extra):
            env.update(self.spec.node_env_extra[k])
        return env

    def _write_cli_config(self) -> None:
        ca = (self.spec.certs / "ca.crt").resolve()
        text = (f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                f'address = "127.0.0.1:{self.port}"\nroot-certificates = "{ca}"\n')
        self.cli_home.mkdir(parents=True, exist_ok=True)
        atomic_write(self.cli_home / "config.toml", text.encode())

    def flwr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The flwr CLI against this deployment's SuperLink (its own FLWR_HOME)."""
        env = self.env(self.cli_home) | {"COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run([str(BIN / "flwr"), *args], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)

    # -- up / down ------------------------------------------------------------------------------
    def __enter__(self) -> "Deployment":
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self, timeout: float = 90) -> None:
        self._write_cli_config()
        self._save_pids()
        self.start_superlink(timeout=timeout)
        registered = [k for k in range(len(self.spec.hospital_dirs)) if k not in self.spec.unregistered]
        for k in registered:
            self.register(k)
        for k in range(len(self.spec.hospital_dirs)):
            self.start_supernode(k)
        self.wait_nodes(len(registered), timeout=timeout)

    def start_superlink(self, *, timeout: float) -> None:
        certs = self.spec.certs.resolve()
        cmd = [str(BIN / "flower-superlink"), "--ssl-ca-certfile", str(certs / "ca.crt"),
               "--ssl-certfile", str(certs / "server.crt"), "--ssl-keyfile", str(certs / "server.key"),
               "--enable-supernode-auth", "--disable-runtime-dependency-installation",
               "--isolation", "subprocess", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.spec.superlink_db:
            (self.work / "superlink.db").unlink(missing_ok=True)
            cmd += ["--database", str(self.work / "superlink.db")]
        self.procs["superlink"] = start(cmd, log=self.work / "superlink.log", env=self.env(self.work / "link-home"))
        self._save_pids()
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        while time.monotonic() < deadline:
            if not alive(self.procs["superlink"].pid):
                raise DeployError(f"flower-superlink exited: {self._tail('superlink')}")
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/health", context=context, timeout=2):
                    return
            except (OSError, ValueError):
                time.sleep(0.5)
        raise DeployError(f"flower-superlink did not answer on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def register(self, k: int) -> None:
        pub = (self.spec.certs / f"hospital-{k}" / "auth_key.pub").resolve()
        out = self.flwr("supernode", "register", str(pub), CONNECTION, "--name", f"hospital-{k}")
        if out.returncode != 0:
            raise DeployError(f"registering hospital-{k} ({pub}) failed: {_last_line(out)}")

    def node_config(self, k: int) -> dict:
        node = {"data-dir": str(Path(self.spec.hospital_dirs[k]).resolve()),
                "state-dir": str(self.work / f"hospital-{k}" / "state")}
        if self.spec.test_mode:
            node.update({"test-mode": True, "hospital-index": k})
        if k < len(self.spec.node_extra):
            node.update(self.spec.node_extra[k])
        return node

    def start_supernode(self, k: int) -> None:
        home = self.work / f"hospital-{k}"
        home.mkdir(parents=True, exist_ok=True)
        node_config = " ".join(f"{key}={_toml(value)}" for key, value in self.node_config(k).items())
        runtime_port = free_port()
        launcher = [str(BIN / "flower-supernode")]
        doorbell = free_udp_port() if self.spec.warm_worker and self.spec.poll_interval > 0 else None
        if self.spec.poll_interval > 0:
            launcher = [sys.executable, "-m", "federation.launch.polling", str(self.spec.poll_interval)]
            launcher += ["--doorbell", str(doorbell)] if doorbell else []
        cmd = [*launcher, "--root-certificates", str((self.spec.certs / "ca.crt").resolve()),
               "--superlink", self.spec.superlink_address or f"127.0.0.1:{self.port}",
               "--auth-supernode-private-key", str((self.spec.certs / f"hospital-{k}" / "auth_key").resolve()),
               "--node-config", node_config, "--isolation", "process" if self.spec.warm_worker else "subprocess",
               "--host", "127.0.0.1", "--port", str(runtime_port), "--max-wait-time", str(self.spec.connect_timeout)]
        node = start(cmd, log=home / "supernode.log", env=self.hospital_env(k))
        self.procs[f"hospital-{k}"] = node
        if self.spec.warm_worker:
            worker = [sys.executable, "-m", "federation.launch.warm_worker", f"127.0.0.1:{runtime_port}",
                      "--parent-pid", str(node.pid), "--poll", str(self.spec.poll_interval or 0.05),
                      "--clientapp", clientapp_reference(self.spec.app_dir)]
            worker += ["--doorbell", str(doorbell)] if doorbell else []
            self.procs[f"worker-{k}"] = start(worker, log=home / "worker.log", env=self.hospital_env(k))
        self._save_pids()

    def wait_nodes(self, count: int, *, timeout: float) -> None:
        """Wait until `count` SuperNodes are online (flwr supernode list)."""
        deadline = time.monotonic() + timeout
        online = 0
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                unregistered = name in {f"{kind}-{k}" for k in self.spec.unregistered for kind in ("hospital", "worker")}
                if not alive(proc.pid) and not unregistered:
                    raise DeployError(f"{name} exited: {self._tail(name)}")
            online = self.online_nodes()
            if online >= count:
                return
            time.sleep(1.0)
        raise DeployError(f"only {online} of {count} SuperNodes came online within {timeout:.0f} s")

    def online_nodes(self) -> int:
        out = self.flwr("supernode", "list", CONNECTION, "--format", "json")
        try:
            nodes = json.loads(out.stdout).get("nodes", [])
        except ValueError:
            return 0
        return sum(1 for n in nodes if str(n.get("status", "")).lower() == "online")

    def kill_node(self, k: int) -> None:
        """Hard-kill one hospital (its SuperNode and everything below it): a dropout."""
        procs = [self.procs.pop(name) for name in (f"hospital-{k}", f"worker-{k}") if name in self.procs]
        stop_pids([proc.pid for proc in procs], grace=0.0)
        for proc in procs:
            proc.wait(timeout=10)
        self._save_pids()

    def down(self) -> None:
        pids = [p.pid for p in self.procs.values()] + self._recorded_pids()
        stop_pids(sorted(set(pids)))
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        self._save_pids()

    def _save_pids(self) -> None:
        data = {"port": self.port, "spec": {"certs": str(self.spec.certs.resolve()),
                                            "hospital_dirs": [str(d) for d in self.spec.hospital_dirs],
                                            "test_mode": self.spec.test_mode,
                                            "poll_interval": self.spec.poll_interval,
                                            "warm_worker": self.spec.warm_worker,
                                            "superlink_db": self.spec.superlink_db},
                "pids": {name: [proc.pid, start_time(proc.pid)] for name, proc in self.procs.items()}}
        atomic_write(self.work / "pids.json", json.dumps(data, indent=1).encode())

    def _recorded_pids(self) -> list[int]:
        """PIDs a previous `up` recorded, only if each is still the very process started then."""
        try:
            data = json.loads((self.work / "pids.json").read_text())
            return [pid for pid, started in data["pids"].values() if started and start_time(pid) == started]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    @classmethod
    def attach(cls, workdir: str | Path) -> "Deployment":
        """The deployment a previous `python -m federation up --workdir W` started (for run/down)."""
        path = Path(workdir) / "pids.json"
        try:
            data = json.loads(path.read_text())
            spec = DeploySpec(workdir=Path(workdir), certs=Path(data["spec"]["certs"]),
                              hospital_dirs=[Path(d) for d in data["spec"]["hospital_dirs"]],
                              test_mode=data["spec"]["test_mode"], port=data["port"],
                              poll_interval=data["spec"]["poll_interval"],
                              warm_worker=data["spec"].get("warm_worker", False),
                              superlink_db=data["spec"].get("superlink_db", False))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DeployError(f"{path}: no deployment recorded there ({exc})") from None
        return cls(spec)

    def _tail(self, name: str) -> str:
        log = self.work / "superlink.log" if name == "superlink" else self.work / name / "supernode.log"
        if name.startswith("worker-"):
            log = self.work / name.replace("worker-", "hospital-") / "worker.log"
        text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace")) if log.exists() else ""
        lines = [l.strip() for l in text.splitlines() if l.strip()]
        failures = [l for l in lines if re.search(r"error|failed|exit code|refused", l, re.I)]
        return " | ".join((failures or lines)[-3:]) or "(no output)"

    # -- a run ----------------------------------------------------------------------------------
    def run(self, config: dict, *, timeout: float = 240) -> dict:
        """`flwr run` the app with run-config overrides; wait for its end; return results.json.

        Raises:
            DeployError: the run could not start, failed without results, or timed out.
        """
        out_dir = Path(config.setdefault("out-dir", str(self.work / f"run-{time.time_ns()}")))
        if self.spec.poll_interval > 0:
            config.setdefault("server-poll-interval", self.spec.poll_interval)
        overrides = " ".join(f"{key}={_toml(value)}" for key, value in config.items())
        started = self.flwr("run", str(self.spec.app_dir), CONNECTION, "--run-config", overrides, "--format", "json")
        try:
            run_id = int(json.loads(started.stdout)["run-id"])
        except (ValueError, KeyError, TypeError):
            raise DeployError(f"flwr run failed: {_last_line(started)}") from None
        status = wait_for_run(lambda: self.run_status(run_id), out_dir / "results.json", timeout=timeout)
        if status is None:
            self.flwr("stop", str(run_id), CONNECTION)
            raise DeployError(f"run {run_id} did not finish within {timeout:.0f} s (stopped it)")
        results = out_dir / "results.json"
        if not results.is_file():
            raise DeployError(f"run {run_id} {status} without results: see {self.work}/superlink.log")
        data = json.loads(results.read_text())
        data["run_id"], data["flwr_status"] = run_id, status
        return data

    def run_status(self, run_id: int) -> str:
        out = self.flwr("list", CONNECTION, "--run-id", str(run_id), "--format", "json")
        try:
            runs = json.loads(out.stdout)["runs"]
            return str(runs[0]["status"])
        except (ValueError, KeyError, IndexError, TypeError):
            return "unknown"


def wait_for_run(flower_status, results: Path, *, timeout: float, recheck: float = 5.0) -> str | None:
    """Wait until Flower says a run finished; its status, or None after ``timeout`` seconds.

    Flower's status comes from a `flwr list` process (``flower_status()``), about 1 s of CPU each:
    polled every 0.5 s it took a core from the run it waited for. So it is asked when the
    ServerApp's results.json says the run ended, and every ``recheck`` seconds otherwise (a run
    that dies before writing results); the file is read every 0.2 s.
    """
    deadline = time.monotonic() + timeout
    ask_at = time.monotonic() + recheck
    while time.monotonic() < deadline:
        if _results_final(results) or time.monotonic() >= ask_at:
            status = flower_status()
            if status.startswith("finished"):
                return status
            ask_at = time.monotonic() + recheck
        time.sleep(0.2)
    return None


def _results_final(results: Path) -> bool:
    """Has the ServerApp written a final status (not "running") to results.json?"""
    try:
        return json.loads(results.read_text()).get("status", "running") != "running"
    except (OSError, ValueError, AttributeError):
        return False


def clientapp_reference(app_dir: Path) -> str:
    """The `module:attribute` of the app's ClientApp, from its pyproject.toml."""
    import tomllib
    with open(Path(app_dir) / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["flwr"]["app"]["components"]["clientapp"]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def _last_line(out: subprocess.CompletedProcess) -> str:
    text = (out.stderr or "") + "\n" + (out.stdout or "")
    lines = [l.strip() for l in text.splitlines() if l.strip() and not set(l.strip()) <= set("─│╭╮╰╯ ")]
    return lines[-1].strip("│ ") if lines else f"exit code {out.returncode}"


__all__ = ["Deployment", "DeploySpec", "DeployError", "flower_env", "wait_for_run"]
