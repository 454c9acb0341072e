"""Seconds per Dopamine round with SecAgg+ on a real loopback deployment (TLS, SuperNode auth),
for K = 3 and K = 10 SuperNodes, and where the time goes: each SecAgg+ stage's wall time at the
server, and CPU seconds a round per component (SuperLink, SuperNodes, ClientApp processes).

Two setups (docs/OPERATORS.md, "Speed"):
  stock  Flower's own executables: a `flwr-clientapp` process per message, 3 s poll sleeps;
  fast   adaptive polling + fast object-pull retries (federation/polling.py), one warm ClientApp
         process per node rung by its SuperNode (warm_worker.py, doorbell.py).
Both keep the SuperLink state in memory and give each node cpu_count // K torch threads.

    .venv/bin/python benchmarks/bench_federation.py [--nodes 3 10] [--setups stock fast] [--rounds 3]
        [--stock-max-nodes 3]

Printed as a table (not a timed test). Tiny data (32 px, ~8 patients per hospital): the numbers
are the federation's overhead plus a small training step. A warm-up run (1 round) precedes the
measured run, as a long federation spends nearly all its rounds warm.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from federation.launch.deploy import Deployment, DeploySpec  # noqa: E402
from federation.launch.procs import descendants  # noqa: E402
from federation.launch.split_data import split  # noqa: E402
from trainer.data.synth import generate_dataset  # noqa: E402

SETUPS = {"stock": {"poll_interval": 0.0, "warm_worker": False},
          "fast": {"poll_interval": 0.02, "warm_worker": True}}


def _cpu(pid: int, fields: tuple[int, ...] = (11, 12, 13, 14)) -> float:
    """CPU seconds of one live process: utime, stime (11, 12) and its reaped children's (13, 14)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(stat[i]) for i in fields) / os.sysconf("SC_CLK_TCK")


def _own_and_below(pid: int) -> tuple[float, float]:
    """(the process's own CPU s, CPU s of everything below it: live descendants and reaped ones)."""
    below = _cpu(pid, (13, 14)) + sum(_cpu(child) for child in descendants(pid))
    return _cpu(pid, (11, 12)), below


def cpu_by_component(dep: Deployment) -> dict[str, float]:
    """CPU seconds so far of the SuperLink itself, the processes below it (SuperExec and the
    ServerApps), the SuperNodes themselves, and the ClientApp processes (warm workers, or the
    per-message `flwr-clientapp` processes below each SuperNode)."""
    out = {"superlink": 0.0, "serverapp": 0.0, "supernodes": 0.0, "clientapps": 0.0}
    for name, proc in dep.procs.items():
        own, below = _own_and_below(proc.pid)
        if name == "superlink":
            out["superlink"] += own
            out["serverapp"] += below
        elif name.startswith("worker-"):
            out["clientapps"] += own + below
        else:
            out["supernodes"] += own
            out["clientapps"] += below
    return out


def bench(nodes: int, setup: str, rounds: int, work: Path, certs: Path) -> dict:
    data = split(work / "synth", work / f"split-{nodes}", hospitals=nodes, eval_fraction=0.0, seed=0)
    spec = DeploySpec(workdir=work / f"dep-{nodes}-{setup}", certs=certs,
                      hospital_dirs=[Path(d) for d in data["hospitals"]], **SETUPS[setup])
    config = {"hospitals": nodes, "total-patients": data["total"], "max-patients": data["max"],
              "sample-rate": 0.5, "secagg-timeout": 600.0}
    started = time.perf_counter()
    with Deployment(spec) as dep:
        up = time.perf_counter() - started
        warmup = dep.run(dict(config, rounds=1), timeout=3600)
        before = cpu_by_component(dep)
        results = dep.run(dict(config, rounds=rounds), timeout=3600)
        after = cpu_by_component(dep)
    for r in (warmup, results):
        if r["status"] != "completed":
            raise SystemExit(f"K={nodes} {setup}: run {r['status']}: {r['reason']}")
    # A child that exits between the snapshots moves into its parent's reaped time, where the
    # difference still counts it once (a grandchild reaped by a child that then exits is lost).
    cpu = {k: max(after[k] - before[k], 0.0) / rounds for k in after}
    stages = {s: statistics.mean(r["stage_seconds"].get(s, 0.0) for r in results["rounds"])
              for s in ("setup", "share_keys", "collect_masked_vectors")}
    per_round = statistics.mean(r["seconds"] for r in results["rounds"])
    stages["rest"] = per_round - sum(stages.values())   # unmask, aggregation, evaluation, bookkeeping
    return {"nodes": nodes, "setup": setup, "up": up, "warmup": warmup["rounds"][0]["seconds"],
            "per_round": per_round, "stages": stages, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--setups", nargs="+", default=["stock", "fast"], choices=tuple(SETUPS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stock-max-nodes", type=int, default=3,
                        help="skip `stock` above this many nodes (~2 min a round at 10 here)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fed-") as tmp:
        work = Path(tmp)
        generate_dataset(work / "synth", 8 * max(args.nodes), size=32, seed=0)
        certs = work / "certs"
        subprocess.run([str(REPO / "scripts" / "make_certs.sh"), str(certs), str(max(args.nodes))],
                       check=True, capture_output=True)
        rows = []
        for n in args.nodes:
            for setup in args.setups:
                if setup == "stock" and n > args.stock_max_nodes:
                    continue
                rows.append(bench(n, setup, args.rounds, work, certs))
                r = rows[-1]
                print(f"  K={n} {setup}: {r['per_round']:.1f} s a round", file=sys.stderr, flush=True)
    print(f"{'nodes':>5} {'setup':>6} {'s/round':>8} | {'setup':>6} {'keys':>6} {'masked':>7} {'unmask+':>7} | "
          f"{'CPU s/round: link':>17} {'server':>7} {'nodes':>6} {'apps':>6} {'total':>6}")
    for r in rows:
        s, c = r["stages"], r["cpu"]
        print(f"{r['nodes']:>5} {r['setup']:>6} {r['per_round']:8.1f} | {s['setup']:6.2f} {s['share_keys']:6.2f} "
              f"{s['collect_masked_vectors']:7.2f} {s['rest']:7.2f} | {c['superlink']:17.2f} {c['serverapp']:7.2f} "
              f"{c['supernodes']:6.2f} {c['clientapps']:6.2f} {sum(c.values()):6.2f}")
    print("\n(stages: the ServerApp's wall seconds per SecAgg+ stage, unmask+ = the rest of the round;\n"
          " CPU: user+system seconds a round, all processes of the federation)\n"
          f"target: <= 2 s a round at 10 nodes; {os.cpu_count()} CPUs; `uptime` at the end:",
          subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
