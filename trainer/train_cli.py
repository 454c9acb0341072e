"""`python -m trainer train`: one mode on one data folder, with progress and a run directory."""
from __future__ import annotations

import argparse
import sys

from trainer.config import MODES, PRESETS, TrainConfig, resolve

# Flags that map 1:1 onto TrainConfig fields (dest = field name). Defaults are None so that only
# flags the user typed override the preset and the TOML file.
FLAGS = [
    ("--data", str, "data folder (APTOS, EyePACS or folder-per-grade layout)"),
    ("--out", str, "run directory (default runs/<mode>)"),
    ("--hospitals", int, "number of simulated hospitals K"),
    ("--rounds", int, "communication rounds (federated modes) or epochs (central modes)"),
    ("--image-size", int, "square input size in pixels"),
    ("--partition", str, "iid | dirichlet | quantity"),
    ("--dirichlet-alpha", float, "label-skew concentration for --partition dirichlet"),
    ("--sample-rate", float, "Poisson sampling rate q per patient (dopamine)"),
    ("--batch-size", int, "central: minibatch; central-dp: expected batch"),
    ("--local-epochs", int, "fedavg / fl-parallel-dp local epochs"),
    ("--local-batch-size", int, "fedavg / fl-parallel-dp local (expected) batch"),
    ("--client-fraction", float, "fedavg / fl-parallel-dp share of hospitals per round"),
    ("--learning-rate", float, "server (or local) learning rate"),
    ("--momentum", float, "SGD momentum"),
    ("--clipping-norm", float, "per-patient L2 clipping bound C"),
    ("--noise-multiplier", float, "σ: noise std / C"),
    ("--target-epsilon", float, "calibrate σ to reach this ε after --rounds, and stop there"),
    ("--delta", float, "δ (must be below 1/N)"),
    ("--accountant", str, "rdp | prv"),
    ("--min-participants", int, "K_min: hospitals a round needs; noise shares are sized for it"),
    ("--colluders", int, "t: hospitals that may collude against the others"),
    ("--per-sample-method", str, "functorch | opacus-hooks | opacus-ew | ghost"),
    ("--weights", str, "warm start: a local SqueezeNet 1.1 state dict (its body; public) or a model.pt "
                       "checkpoint (whole; its privacy history is composed into epsilon unless --weights-public)"),
    ("--max-patients", int, "use at most this many training patients"),
    ("--split-file", str, "CSV id_code,split fixing train/val/test"),
    ("--seed", int, "experiment seed: data split, init, augmentation (never the DP noise; default 0)"),
    ("--noise-seed", int, "TEST ONLY: seed the DP noise and sampling; the run then has NO privacy "
                          "guarantee and export/hub refuse to publish it"),
    ("--device", str, "cpu or cuda"),
    ("--threads", int, "torch CPU threads"),
    ("--eval-every", int, "evaluate every N rounds"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODES, help="training mode (required unless --resume)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="paper: the paper's settings; demo: minutes on CPU")
    parser.add_argument("--config", help="TOML file with TrainConfig fields")
    parser.add_argument("--resume", metavar="RUN", help="continue a killed run from its last complete round")
    parser.add_argument("--no-augment", action="store_true", help="turn training augmentation off")
    parser.add_argument("--weights-public", action="store_true",
                        help="declare that --weights was trained on public data only (recorded in the model card)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for flag, kind, help_text in FLAGS:
        parser.add_argument(flag, type=kind, default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in FLAGS}
    if args.no_augment:
        overrides["augment"] = False
    if getattr(args, "weights_public", False):
        overrides["weights_public"] = True
    if not overrides.get("out"):
        overrides["out"] = f"runs/{args.mode}"
    config = resolve(args.mode, preset=args.preset, toml_path=args.config, overrides=overrides)
    if not config.data:
        raise ValueError("--data is required (make one with: python -m trainer synth --out DIR --n 1500)")
    return config


def run(args: argparse.Namespace) -> int:
    from trainer.runner import Run
    if args.resume:
        job = Run.resume(args.resume, progress=not args.quiet)
    else:
        if not args.mode:
            raise ValueError("--mode is required (one of " + ", ".join(MODES) + ")")
        config = config_from_args(args)
        if config.preset == "paper" and not config.weights:
            print("warning: the paper started from ImageNet weights; without --weights this trains from "
                  "scratch and will not reach the paper's accuracy", file=sys.stderr)
        job = Run(config, progress=not args.quiet)
    model_path = job.train()
    last = job.rows[-1]
    eps = "no DP" if last["epsilon"] is None else f"epsilon={last['epsilon']} delta={last['delta']} ({last['accountant']})"
    print(f"{job.config.mode}: {job.stop_reason}; round {job.round}; val acc {last['val_accuracy']:.3f}; "
          f"{eps}; model: {model_path}")
    return 0
