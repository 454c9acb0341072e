"""The paper's claim, as far as this data reproduces it: test accuracy against ε ∈ {1, 2, 4, 8} for
central-dp, fl-parallel-dp and dopamine, with central and fedavg as ceilings, K = 10, 3 seeds.

    .venv/bin/python benchmarks/bench_sweep.py --work /tmp/evidence [--difficulty D] [--seeds 0,1,2]
        [--epsilons 1,2,4,8] [--size 32] [--threads 1] [--device cpu|cuda] [--docs]

Makes (once, under WORK) the public body and the hospitals' 3662 synthetic patients at the chosen
difficulty, then runs `python -m trainer sweep` into WORK/sweep-<size>-d<D> (rerun to resume a
killed sweep). `--docs` copies the table and figure to docs/sweep.md and docs/sweep.png.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evidence_common import evidence_parser, parse, run_sweep  # noqa: E402


def main() -> int:
    parser = evidence_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epsilons", default="1,2,4,8")
    parser.add_argument("--modes", default="central,central-dp,fedavg,fl-parallel-dp,dopamine")
    args = parse(parser)
    run_sweep(args, "sweep", "--modes", args.modes, "--seeds", args.seeds, "--epsilons", args.epsilons)
    return 0


if __name__ == "__main__":
    sys.exit(main())
