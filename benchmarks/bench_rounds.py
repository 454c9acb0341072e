"""The fewest rounds: Dopamine at fixed ε (8, δ = 1e-5) for T ∈ {10, 15, 25, ..., 400} rounds, with
q = epochs / T (larger batches for fewer rounds, the same passes over the data) and σ calibrated
for each (q, T) so that the run spends exactly the budget; 3 seeds; on the sweep's task.

    .venv/bin/python benchmarks/bench_rounds.py --work /tmp/evidence [--difficulty D] [--seeds 0,1,2]
        [--rounds 10,15,25,50,100,200,400] [--epsilon 8] [--size 32] [--threads 1] [--device cpu] [--docs]

Runs `python -m trainer sweep --rounds-grid ...` into WORK/rounds-<size>-d<D>; the table adds the
expected Flower wall clock (README's federation benchmark, s/round x T). `--docs` copies the table
and figure to docs/rounds.md and docs/rounds.png.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evidence_common import evidence_parser, parse, run_sweep  # noqa: E402


def main() -> int:
    parser = evidence_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rounds", default="10,15,25,50,100,200,400")
    parser.add_argument("--epsilon", default="8")
    args = parse(parser)
    run_sweep(args, "rounds", "--modes", "dopamine", "--seeds", args.seeds, "--epsilons", args.epsilon,
              "--rounds-grid", args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
