"""The paper's claim, as far as this data reproduces it: test accuracy against ε ∈ {1, 2, 4, 8} for
central-dp, fl-parallel-dp and dopamine, with central and fedavg as ceilings, K = 10, 3 seeds.

    .venv/bin/python benchmarks/bench_sweep.py --work /tmp/evidence [--difficulty D] [--seeds 0,1,2]
        [--epsilons 1,2,4,8] [--size 32] [--threads 1] [--device cpu|cuda] [--docs]

Makes (once, under WORK) the public body and the hospitals' 3662 synthetic patients at the chosen
difficulty, then runs `python -m trainer sweep` into WORK/sweep-<size>-d<D> (rerun to resume a
killed sweep). `--docs` copies the table and figure to docs/sweep.md and docs/sweep.png.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evidence_common import REPO, evidence_parser, hospitals, parse, public_body, trainer  # noqa: E402


def main() -> int:
    parser = evidence_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epsilons", default="1,2,4,8")
    parser.add_argument("--modes", default="central,central-dp,fedavg,fl-parallel-dp,dopamine")
    args = parse(parser)
    started, load = time.time(), os.getloadavg()[0]
    body = public_body(args.work, size=args.size, threads=args.threads, device=args.device)
    data = hospitals(args.work, size=args.size, difficulty=args.difficulty)
    out = args.work / f"sweep-{args.size}-d{args.difficulty:g}"
    trainer("sweep", "--data", str(data), "--weights", str(body), "--weights-public", "--out", str(out),
            "--modes", args.modes, "--seeds", args.seeds, "--epsilons", args.epsilons, "--image-size", str(args.size),
            "--threads", str(args.threads), "--device", args.device)
    if args.docs:
        shutil.copyfile(out / "sweep.md", REPO / "docs" / "sweep.md")
        shutil.copyfile(out / "sweep.png", REPO / "docs" / "sweep.png")
    print(f"bench_sweep: {time.time() - started:.0f} s in this call; 1-min load at start {load:.1f}, "
          f"{os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
