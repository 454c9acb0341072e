"""`python -m trainer synth --out DIR --n N --size PX --seed S [--difficulty D]`: a synthetic set in the APTOS layout."""
from __future__ import annotations

import argparse
import time

from trainer.data.synth import APTOS_PROBS, generate_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (train.csv + train_images/)")
    parser.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, identical bytes (default 0)")
    parser.add_argument("--balanced", action="store_true",
                        help="equal grade frequencies instead of APTOS 2019's imbalance")
    parser.add_argument("--difficulty", type=float, default=0.0,
                        help="0 (default: today's images) to 1: lesions fade to 20%% of their contrast")


def run(args: argparse.Namespace) -> int:
    probs = (0.2,) * 5 if args.balanced else APTOS_PROBS
    start = time.perf_counter()
    out = generate_dataset(args.out, args.n, size=args.size, seed=args.seed, class_probs=probs,
                           difficulty=args.difficulty)
    print(f"wrote {args.n} images of {args.size}x{args.size} px (difficulty {args.difficulty:g}) to {out} "
          f"(train.csv, train_images/) in {time.perf_counter() - start:.1f} s")
    return 0
