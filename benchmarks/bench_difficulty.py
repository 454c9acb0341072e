"""Choose the synthetic task's difficulty BEFORE any private run: the value where the non-private
ceiling (`central`, from the public body) gains most over the public body itself, on VALIDATION.

    .venv/bin/python benchmarks/bench_difficulty.py --work /tmp/evidence [--difficulties 0,0.25,0.5,0.75,1]
        [--seeds 0,1] [--size 32] [--threads 1] [--device cpu]

For each difficulty: the hospitals' data (3662 synthetic patients), then `trainer sweep --modes
central` (the body's accuracy and central's kept round, per seed). Prints a table; the choice is
the largest mean validation gain. Test figures are printed for information only and play no part
in the choice. No private mode runs here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evidence_common import hospitals, public_body, trainer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--difficulties", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    started, load = time.time(), os.getloadavg()[0]
    body = public_body(args.work, size=args.size, threads=args.threads, device=args.device)
    lines = ["| difficulty | body val acc | central val acc (kept) | gain (val) | body test acc | central test acc "
             "| min/central run |", "|---|---|---|---|---|---|---|"]
    gains = {}
    for difficulty in (float(d) for d in args.difficulties.split(",")):
        data = hospitals(args.work, size=args.size, difficulty=difficulty)
        out = args.work / "difficulty" / f"d{difficulty:g}"
        trainer("sweep", "--data", str(data), "--weights", str(body), "--weights-public", "--out", str(out),
                "--modes", "central", "--seeds", args.seeds, "--image-size", str(args.size),
                "--threads", str(args.threads), "--device", args.device)
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
        body_rows = [r for r in rows if r["kind"] == "body"]
        runs = [r for r in rows if r["mode"] == "central"]
        mean = lambda rs, k: statistics.fmean(r[k] for r in rs)  # noqa: E731
        gains[difficulty] = mean(runs, "val_accuracy") - mean(body_rows, "val_accuracy")
        lines.append(f"| {difficulty:g} | {mean(body_rows, 'val_accuracy'):.3f} | {mean(runs, 'val_accuracy'):.3f} "
                     f"| {gains[difficulty]:+.3f} | {mean(body_rows, 'test_accuracy'):.3f} "
                     f"| {mean(runs, 'test_accuracy'):.3f} | {mean(runs, 'seconds') / 60:.1f} |")
    print("\n".join(lines))
    choice = max(gains, key=gains.get)
    print(f"\nchosen difficulty: {choice:g} (largest validation gain of central over the public body); "
          f"seeds {args.seeds}; {time.time() - started:.0f} s in all; 1-min load at start {load:.1f}, "
          f"{os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
