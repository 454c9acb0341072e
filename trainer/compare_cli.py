"""`python -m trainer compare`: all five modes on one data set, plotted as in the paper.

Writes OUT/<mode>/ (a full run directory each), OUT/compare.png (test accuracy and ε against
epochs, one line per mode) and OUT/compare.md (final and best-on-validation figures).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from trainer.config import MODES, PRESETS
from edge_client.fileio import atomic_write_text
from trainer.reports import compare_table_md, write_compare_png
from trainer.train_cli import FLAGS, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--config", help="TOML file with TrainConfig fields (applied to every mode)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--weights-public", action="store_true",
                        help="declare that --weights was trained on public data only")
    parser.add_argument("--quiet", action="store_true")
    for flag, kind, help_text in FLAGS:
        parser.add_argument(flag, type=kind, default=None, help=help_text)


def run(args: argparse.Namespace) -> int:
    from trainer.runner import Run
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"--modes: unknown {unknown}; choose from {', '.join(MODES)}")
    root = Path(args.out or "runs/compare")
    runs, summaries = {}, {}
    for mode in modes:
        mode_args = argparse.Namespace(**{**vars(args), "mode": mode, "out": str(root / mode)})
        job = Run(config_from_args(mode_args), progress=not args.quiet)
        job.train()
        runs[mode] = job.rows
        privacy = job.mode.privacy() or {}
        summaries[mode] = {"rows": job.rows, "epsilon": privacy.get("epsilon"), "delta": privacy.get("delta"),
                           "accountant": privacy.get("accountant")}
        print(f"{mode}: {job.stop_reason}", flush=True)
    write_compare_png(runs, root / "compare.png")
    table = compare_table_md(summaries)
    atomic_write_text(root / "compare.md", table)
    print(table)
    print(f"figure: {root / 'compare.png'}")
    return 0
