"""Seconds per Dopamine round with SecAgg+ on a real loopback deployment (TLS, SuperNode auth),
for K = 3 and K = 10 SuperNodes, with Flower's stock polling and with `--poll-interval 0.1`, and
where the time goes: each SecAgg+ stage's wall time at the server, and the cost of the process
Flower 1.42 starts for EVERY message (one `flwr-clientapp` per node per stage, four stages a round),
against one long-lived ClientApp process per node (`federation/warm_worker.py`).

    .venv/bin/python benchmarks/bench_federation.py [--nodes 3 10] [--rounds 3] [--polls 0 0.1]
        [--executors process warm]

Printed as a table (not a timed test). Tiny data (32 px, ~8 patients per hospital): the numbers
are the federation's overhead, not training.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from federation.deploy import BIN, Deployment, DeploySpec, flower_env  # noqa: E402
from federation.split_data import split  # noqa: E402
from trainer.data.synth import generate_dataset  # noqa: E402


def process_costs(home: Path) -> dict[str, float]:
    """Wall seconds of what every message pays before the app runs (median of 3)."""
    env = flower_env(home)
    commands = {"python start": [sys.executable, "-c", "pass"],
                "flwr-clientapp start (--help)": [str(BIN / "flwr-clientapp"), "--help"],
                "light stage imports (flwr + guards)": [sys.executable, "-c", "import federation.client_app"],
                "fit stage imports (torch, trainer)": [sys.executable, "-c",
                                                       "import federation.client_app, federation.task"]}
    out = {}
    for name, cmd in commands.items():
        times = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times)
    return out


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system, with reaped children) of the given processes and their live
    descendants: a load-independent measure of what a run costs."""
    import os
    from federation.procs import descendants
    tick, total, seen = os.sysconf("SC_CLK_TCK"), 0, set()
    for pid in pids:
        for p in [pid, *descendants(pid)]:
            if p in seen:
                continue
            seen.add(p)
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))   # utime stime cutime cstime
    return total / tick


def bench(nodes: int, poll: float, rounds: int, work: Path, certs: Path, warm: bool) -> dict:
    data = split(work / "synth", work / f"split-{nodes}", hospitals=nodes, eval_fraction=0.0, seed=0)
    spec = DeploySpec(workdir=work / f"dep-{nodes}-{poll}-{warm}", certs=certs,
                      hospital_dirs=[Path(d) for d in data["hospitals"]], poll_interval=poll, warm_worker=warm)
    started = time.perf_counter()
    with Deployment(spec) as dep:
        up = time.perf_counter() - started
        pids = [p.pid for p in dep.procs.values()]
        cpu_before = cpu_seconds(pids)
        results = dep.run({"hospitals": nodes, "rounds": rounds, "total-patients": data["total"],
                           "max-patients": data["max"], "sample-rate": 0.5, "secagg-timeout": 600.0},
                          timeout=3600)
        cpu = (cpu_seconds(pids) - cpu_before) / rounds
    if results["status"] != "completed":
        raise SystemExit(f"K={nodes}: run {results['status']}: {results['reason']}")
    warm = results["rounds"][1:] or results["rounds"]
    stages = {s: statistics.mean(r["stage_seconds"].get(s, 0.0) for r in warm)
              for s in ("setup", "share_keys", "collect_masked_vectors")}
    return {"nodes": nodes, "poll": poll, "warm": warm, "up": up, "cpu": cpu, "first": results["rounds"][0]["seconds"],
            "per_round": statistics.mean(r["seconds"] for r in warm), **stages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--polls", type=float, nargs="+", default=[0.0, 0.1],
                        help="0 = Flower's stock polling (3 s sleeps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--executors", nargs="+", default=["process", "warm"], choices=("process", "warm"),
                        help="process: Flower's flwr-clientapp per message; warm: federation/warm_worker.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fed-") as tmp:
        work = Path(tmp)
        generate_dataset(work / "synth", 8 * max(args.nodes), size=32, seed=0)
        certs = work / "certs"
        subprocess.run([str(REPO / "scripts" / "make_certs.sh"), str(certs), str(max(args.nodes))],
                       check=True, capture_output=True)
        costs = process_costs(work / "home")
        print("Per-message process cost (median wall s; Flower starts one per node per SecAgg+ stage):")
        for name, seconds in costs.items():
            print(f"  {name:<40} {seconds:6.2f}")
        print()
        rows = [bench(n, p, args.rounds, work, certs, e == "warm")
                for n in args.nodes for e in args.executors for p in args.polls]
    print(f"{'nodes':>5} {'executor':>8} {'poll':>6} {'up s':>6} {'round 1 s':>9} {'s/round':>8} "
          f"{'setup':>6} {'keys':>6} {'masked':>7} {'CPU s/round':>11}   (later rounds; stages = server wall s)")
    for r in rows:
        poll = "stock" if r["poll"] == 0 else f"{r['poll']:g} s"
        executor = "warm" if r["warm"] else "process"
        print(f"{r['nodes']:>5} {executor:>8} {poll:>6} {r['up']:6.1f} {r['first']:9.1f} {r['per_round']:8.1f} "
              f"{r['setup']:6.1f} {r['share_keys']:6.1f} {r['collect_masked_vectors']:7.1f} {r['cpu']:11.1f}")
    print("\ntarget: <= 2 s a round at 10 nodes; `uptime` load at the end:",
          subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
