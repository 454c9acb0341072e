"""CLI for a local deployment: `up`, `run`, `down`, and `deploy` (up + run + down, always down).

    python -m federation up   --workdir W --certs CERTS --data-root SPLIT --hospitals 3
    python -m federation run  --workdir W -c 'rounds=3 total-patients=64 max-patients=22'
    python -m federation down --workdir W
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from federation.launch.deploy import DeployError, Deployment, DeploySpec


def _spec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, type=Path, help="logs, pids.json, node state")
    parser.add_argument("--certs", required=True, type=Path, help="output of scripts/make_certs.sh")
    parser.add_argument("--data-root", required=True, type=Path, help="holds hospital-<k>/ folders")
    parser.add_argument("--hospitals", required=True, type=int, help="number of SuperNodes K")
    parser.add_argument("--port", type=int, default=None, help="SuperLink port (default: a free one)")
    parser.add_argument("--poll-interval", type=float, default=0.0,
                        help="adaptive polling from S seconds instead of Flower's fixed 3 s (federation/polling.py)")
    parser.add_argument("--warm-worker", action="store_true",
                        help="one long-lived ClientApp process per SuperNode instead of one per message")
    parser.add_argument("--fast", action="store_true",
                        help="both: --poll-interval 0.02 --warm-worker (docs/OPERATORS.md, Speed)")
    parser.add_argument("--superlink-db", action="store_true",
                        help="keep the SuperLink's state in WORKDIR/superlink.db (SQLite) instead of memory")
    parser.add_argument("--test-mode", action="store_true",
                        help="nodes accept a seed (tests only: noise becomes predictable)")


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--run-config", default="", help="overrides, e.g. 'rounds=3 seed=0'")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")


def add_commands(sub) -> None:
    _spec_args(sub.add_parser("up", help="start SuperLink + K SuperNodes (TLS, auth) and leave them running"))
    _run_args(run := sub.add_parser("run", help="flwr run the app on a deployment started by `up`"))
    run.add_argument("--workdir", required=True, type=Path)
    sub.add_parser("down", help="stop everything `up` started (by PID)").add_argument(
        "--workdir", required=True, type=Path)
    deploy = sub.add_parser("deploy", help="up + run + down (stops everything, also on failure)")
    _spec_args(deploy)
    _run_args(deploy)
    sim = sub.add_parser("simulate", help="flwr run on Flower's simulation engine with K virtual nodes")
    sim.add_argument("--workdir", required=True, type=Path)
    sim.add_argument("--data-root", required=True, type=Path, help="holds hospital-<k>/ folders")
    sim.add_argument("--hospitals", required=True, type=int)
    _run_args(sim)


def parse_overrides(text: str) -> dict:
    """'a=1 b="x" c=true' -> {"a": 1, "b": "x", "c": True} (TOML values)."""
    import tomllib
    out = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"run config override {item!r} is not key=value")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def _spec(args) -> DeploySpec:
    if args.hospitals < 2:
        raise ValueError(f"--hospitals must be >= 2 (SecAgg+ needs two), got {args.hospitals}")
    if args.poll_interval < 0:
        raise ValueError(f"--poll-interval must be > 0 s (or 0 for Flower's own polling), got {args.poll_interval}")
    dirs = [args.data_root / f"hospital-{k}" for k in range(args.hospitals)]
    return DeploySpec(workdir=args.workdir, certs=args.certs, hospital_dirs=dirs, test_mode=args.test_mode,
                      port=args.port, poll_interval=args.poll_interval or (0.02 if args.fast else 0.0),
                      warm_worker=args.warm_worker or args.fast, superlink_db=args.superlink_db)


def _print_results(results: dict) -> int:
    rounds = results.get("rounds", [])
    for r in rounds:
        print(f"round {r['round']}: {r['participants']} hospitals, {r['seconds']:.1f} s, "
              f"epsilon {r.get('epsilon', '-')}" + (f", held-out accuracy {r['eval']['accuracy']:.3f}"
                                                    if r.get("eval") else ""))
    print(f"{results['status']}: {results['reason']}")
    return 0 if results["status"] == "completed" else 1


def run(args) -> int:
    try:
        if args.command == "up":
            dep = Deployment(_spec(args))
            try:
                dep.up()
            except BaseException:
                dep.down()
                raise
            print(f"SuperLink on 127.0.0.1:{dep.port} (TLS, SuperNode auth), {args.hospitals} SuperNodes online; "
                  f"PIDs in {args.workdir / 'pids.json'}; flwr CLI home {dep.cli_home}")
            return 0
        if args.command == "down":
            Deployment.attach(args.workdir).down()
            print(f"stopped every process recorded in {args.workdir / 'pids.json'}")
            return 0
        if args.command == "simulate":
            from federation.launch.simulate import run_simulation
            return _print_results(run_simulation(data_root=args.data_root, hospitals=args.hospitals,
                                                 workdir=args.workdir, config=parse_overrides(args.run_config),
                                                 timeout=args.timeout))
        if args.command == "run":
            return _print_results(Deployment.attach(args.workdir).run(
                parse_overrides(args.run_config), timeout=args.timeout))
        with Deployment(_spec(args)) as dep:
            return _print_results(dep.run(parse_overrides(args.run_config), timeout=args.timeout))
    except DeployError as exc:
        print(f"error: {exc}")
        return 1


__all__ = ["add_commands", "parse_overrides", "run"]
