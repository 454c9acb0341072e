"""`python -m trainer SUBCOMMAND ...`: each subcommand lives in its own module.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their subcommand runs, so `synth` does not pay for importing Opacus.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "synth": ("trainer.data.synth_cli", "write a synthetic fundus data set in the APTOS layout"),
    "train": ("trainer.train_cli", "train one mode (central, central-dp, fedavg, fl-parallel-dp, dopamine)"),
    "compare": ("trainer.compare_cli", "train all five modes and plot them as the paper does"),
    "epsilon": ("trainer.privacy.epsilon_cli", "print epsilon for a DP-SGD setting"),
    "audit": ("trainer.audit_cli", "empirical lower bound on epsilon from one run with gradient canaries"),
    "sweep": ("trainer.sweep_cli", "accuracy against epsilon (every mode) or rounds (dopamine), over seeds"),
}


class UserError(Exception):
    """A bad input the user can fix: printed as one line, exit code 2, no traceback."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    sub_parser = argparse.ArgumentParser(prog=f"python -m trainer {argv[0]}", description=SUBCOMMANDS[argv[0]][1])
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    try:
        return module.run(args)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
