"""`python -m trainer epsilon`: ε for a DP-SGD setting, with its δ and accountant."""
from __future__ import annotations

import argparse
import json

from edge_client.privacy_figures import round_up
from trainer.privacy.accounting import ACCOUNTANTS, compute_epsilon


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--noise-multiplier", type=float, required=True, help="σ (noise std / clipping norm)")
    parser.add_argument("--sample-rate", type=float, required=True, help="Poisson sampling rate q in (0, 1]")
    parser.add_argument("--steps", type=int, required=True, help="number of noisy steps (rounds)")
    parser.add_argument("--delta", type=float, required=True, help="δ of the (ε, δ) guarantee")
    parser.add_argument("--accountant", choices=ACCOUNTANTS, default="rdp")
    parser.add_argument("--patients", type=int, help="N, patients in the training set: delta must be below 1/N")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.patients is not None:
        if args.patients < 1:
            raise ValueError(f"--patients must be >= 1, got {args.patients}")
        if args.delta >= 1 / args.patients:
            raise ValueError(f"--delta {args.delta} must be below 1/N = {1 / args.patients:.3g} "
                             f"(N = {args.patients} patients): a larger delta may expose a whole patient")
    epsilon = round_up(compute_epsilon(noise_multiplier=args.noise_multiplier, sample_rate=args.sample_rate,
                                       steps=args.steps, delta=args.delta, accountant=args.accountant))
    if args.json:
        print(json.dumps({"epsilon": epsilon, "delta": args.delta, "accountant": args.accountant,
                          "noise_multiplier": args.noise_multiplier, "sample_rate": args.sample_rate,
                          "steps": args.steps}))
    else:
        print(f"epsilon = {epsilon} at delta = {args.delta} ({args.accountant.upper()} accountant; "
              f"sigma = {args.noise_multiplier}, q = {args.sample_rate}, {args.steps} steps; rounded up)")
    return 0
