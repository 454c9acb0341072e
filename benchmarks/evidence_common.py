"""Shared by the evidence benchmarks (bench_difficulty, bench_sweep, bench_rounds, bench_audit):
the public body and the hospitals' data, each made once under WORK by the real CLIs.

The public body is the demo's (scripts/demo.sh): 1000 public synthetic patients (seed 7, default
difficulty) and `trainer train --mode central --preset demo`, here at the sweep's image size and
with experiment seed 7. `--weights` loads only the body and each run draws a fresh head from its
own seed; with the body trained at seed 0, a run at seed 0 would redraw the very head the body's
features grew up with and start far ahead of seeds 1 and 2.
The hospitals hold as many synthetic patients as APTOS 2019's training set (3662), seed 1.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PUBLIC_N, PUBLIC_SEED = 1000, 7
HOSPITAL_N, HOSPITAL_SEED = 3662, 1   # APTOS 2019 train.csv rows
# Chosen by benchmarks/bench_difficulty.py before any private run (docs/EVIDENCE.md): the largest
# validation gain of `central` over the public model (+0.080 at 0.5; +0.066 at 0, +0.029 at 1).
CHOSEN_DIFFICULTY = 0.5


def evidence_parser(description: str) -> argparse.ArgumentParser:
    """The options every evidence benchmark takes; a script adds its own, then calls `parse`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--difficulty", type=float, default=CHOSEN_DIFFICULTY)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--docs", action="store_true", help="copy the table and figure into docs/")
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if args.difficulty is None:
        parser.error("--difficulty: none chosen yet; run benchmarks/bench_difficulty.py first")
    return args


def trainer(*args: str, threads: int = 1) -> None:
    """Run `python -m trainer ARGS` from the repo root; raises on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([PY, "-m", "trainer", *args], cwd=REPO, check=True, env=env)


def public_body(work: Path, *, size: int, threads: int = 1, device: str = "cpu") -> Path:
    """WORK/body-<size>/model.pt, trained once (non-private, on public synthetic data)."""
    model = work / f"body-{size}" / "model.pt"
    if not model.is_file():
        data = work / f"public-{size}"
        if not (data / "train.csv").is_file():
            trainer("synth", "--out", str(data), "--n", str(PUBLIC_N), "--size", str(size),
                    "--seed", str(PUBLIC_SEED))
        started = time.time()
        trainer("train", "--mode", "central", "--preset", "demo", "--data", str(data), "--out", str(model.parent),
                "--image-size", str(size), "--seed", str(PUBLIC_SEED), "--threads", str(threads), "--device", device,
                "--quiet")
        print(f"public body: {time.time() - started:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return model


def hospitals(work: Path, *, size: int, difficulty: float) -> Path:
    """WORK/hospitals-<size>-d<difficulty>: the hospitals' synthetic patients, written once."""
    data = work / f"hospitals-{size}-d{difficulty:g}"
    if not (data / "train.csv").is_file():
        trainer("synth", "--out", str(data), "--n", str(HOSPITAL_N), "--size", str(size),
                "--seed", str(HOSPITAL_SEED), "--difficulty", f"{difficulty:g}")
    return data


def run_sweep(args: argparse.Namespace, name: str, *sweep_args: str) -> None:
    """The public body and the hospitals (once under WORK), then `trainer sweep SWEEP_ARGS` into
    WORK/<name>-<size>-d<difficulty>; `--docs` copies its <name>.md and <name>.png into docs/.
    Prints the time this call took and the machine's load when it started."""
    started, load = time.time(), os.getloadavg()[0]
    body = public_body(args.work, size=args.size, threads=args.threads, device=args.device)
    data = hospitals(args.work, size=args.size, difficulty=args.difficulty)
    out = args.work / f"{name}-{args.size}-d{args.difficulty:g}"
    trainer("sweep", "--data", str(data), "--weights", str(body), "--weights-public", "--out", str(out),
            *sweep_args, "--image-size", str(args.size), "--threads", str(args.threads), "--device", args.device)
    if args.docs:
        for suffix in (".md", ".png"):
            shutil.copyfile(out / f"{name}{suffix}", REPO / "docs" / f"{name}{suffix}")
    print(f"bench_{name}: {time.time() - started:.0f} s in this call; 1-min load at start {load:.1f}, "
          f"{os.cpu_count()} CPUs")
