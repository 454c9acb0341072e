"""`python -m trainer sweep`: accuracy against ε for every mode (the paper's claim), or against
rounds T for Dopamine at a fixed ε (`--rounds-grid`), over several seeds, from one public body.

Writes OUT/results.jsonl (a row per run; rerunning the command resumes), OUT/runs/<run>/ (full
run directories), and OUT/sweep.md + OUT/sweep.png (or OUT/rounds.md + OUT/rounds.png).
Seeds fix the split, partition, initialisation and augmentation; the DP noise and sampling always
come from the OS CSPRNG.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

from edge_client.fileio import atomic_write_text
from trainer.config import MODES
from trainer.sweep.plan import EPSILONS, ROUNDS_GRID, SEEDS, SweepSettings, parse_list, planned_runs

# --quick: a CI-sized check of the whole pipeline (minutes on 2 CPU cores), not evidence.
QUICK = dict(epsilons="8", seeds="0", epochs=1, max_patients=200, ceiling_rounds=(1, 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="the hospitals' data folder")
    parser.add_argument("--weights", required=True, help="the public body every run starts from (model.pt)")
    parser.add_argument("--weights-public", action="store_true",
                        help="declare that --weights saw no patient of --data (required)")
    parser.add_argument("--out", default="runs/sweep", help="output folder (rerun to resume)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    parser.add_argument("--epsilons", help="target ε list (default " + ",".join(f"{e:g}" for e in EPSILONS) + ")")
    parser.add_argument("--seeds", help="experiment seeds (default " + ",".join(map(str, SEEDS)) + ")")
    parser.add_argument("--rounds-grid", help="Dopamine only, at each ε: these T with q = epochs/T "
                                              "(e.g. " + ",".join(map(str, ROUNDS_GRID)) + ")")
    parser.add_argument("--hospitals", type=int, default=10, help="K (default 10)")
    parser.add_argument("--image-size", type=int, default=32, help="px (default 32)")
    parser.add_argument("--epochs", type=int, help="passes over the data for every private mode (default 5)")
    parser.add_argument("--sample-rate", type=float, default=0.1, help="q for every private mode (default 0.1)")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--accountant", choices=("rdp", "prv"), default="rdp")
    parser.add_argument("--max-patients", type=int, help="use at most this many training patients")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads per run")
    parser.add_argument("--quick", action="store_true", help="CI-sized: one seed, ε=8, 1 epoch, 200 patients")
    parser.add_argument("--progress", action="store_true", help="a progress bar per run")


def _data_note(data: str) -> str:
    marker = Path(data) / "synth.json"
    if not marker.is_file():
        return f"data: {data}"
    meta = json.loads(marker.read_text())
    return (f"data: {data} (synthetic: n={meta.get('n')}, {meta.get('size')} px, seed {meta.get('seed')}, "
            f"difficulty {meta.get('difficulty', 0)})")


def settings_from_args(args: argparse.Namespace) -> tuple[SweepSettings, list[dict]]:
    """The sweep's settings and plan from the flags (--quick fills what was not given).

    Raises:
        ValueError: a bad list, an unknown mode, a missing --weights file or --weights-public.
    """
    if not args.weights_public:
        raise ValueError("--weights-public is required: every run starts from --weights, which must have seen "
                         "no patient of --data (declare it, as for `trainer train`)")
    if not Path(args.weights).is_file():
        raise ValueError(f"--weights: {args.weights}: file not found")
    quick = QUICK if args.quick else {}
    modes = parse_list(args.modes, str, "--modes", allowed=MODES)
    epsilons = parse_list(args.epsilons or quick.get("epsilons") or ",".join(map(str, EPSILONS)), float, "--epsilons")
    if any(e <= 0 for e in epsilons):
        raise ValueError(f"--epsilons must be > 0, got {epsilons}")
    seeds = parse_list(args.seeds or quick.get("seeds") or ",".join(map(str, SEEDS)), int, "--seeds")
    grid = parse_list(args.rounds_grid, int, "--rounds-grid") if args.rounds_grid else None
    settings = SweepSettings(data=args.data, weights=args.weights, hospitals=args.hospitals,
                             image_size=args.image_size, epochs=args.epochs or quick.get("epochs", 5),
                             sample_rate=args.sample_rate, delta=args.delta, accountant=args.accountant,
                             max_patients=args.max_patients or quick.get("max_patients"),
                             ceiling_rounds=quick.get("ceiling_rounds"), device=args.device, threads=args.threads)
    return settings, planned_runs(modes, epsilons, seeds, grid)


def run(args: argparse.Namespace) -> int:
    from trainer.sweep.execute import execute
    from trainer.sweep.report import epsilon_table_md, rounds_table_md, write_epsilon_png, write_rounds_png
    settings, plan = settings_from_args(args)
    # Opacus' RDP says so at every calibration of a large ε; the reported ε is still an upper bound.
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    out = Path(args.out)
    started, load = time.time(), os.getloadavg()[0]
    rows = execute(settings, plan, out, progress=args.progress)
    wanted = {(k["mode"], k["target_epsilon"], k["seed"], k["rounds"]) for k in plan}
    shown = [r for r in rows if r["kind"] == "body" or (r["mode"], r["target_epsilon"], r["seed"], r["rounds"]) in wanted]
    rounds = any(k["rounds"] is not None for k in plan)
    rate = "q = epochs/T" if rounds else f"q={settings.sample_rate:g}"
    runs = [r for r in shown if r["kind"] == "run"]
    loads = [r["load_start"] for r in runs] or [load]
    note = (f"{_data_note(settings.data)}; K={settings.hospitals}, {settings.image_size} px, {rate}, "
            f"{settings.epochs} epochs for private modes; {len(runs)} runs took {sum(r['seconds'] for r in runs) / 60:.1f} "
            f"min in all on {settings.device} (1-min load {min(loads):.1f}-{max(loads):.1f} at their starts, "
            f"{os.cpu_count()} CPUs); this call {time.time() - started:.0f} s")
    name = "rounds" if rounds else "sweep"
    table = rounds_table_md(shown) if rounds else epsilon_table_md(shown)
    atomic_write_text(out / f"{name}.md", table + "\n" + note + "\n")
    print(table)
    print(note)
    if rounds or any(k["target_epsilon"] is not None for k in plan):
        title = (f"{'rounds at fixed ε' if rounds else 'accuracy against ε'}, K={settings.hospitals}, "
                 f"{settings.image_size} px, seeds {sorted({k['seed'] for k in plan})}")
        figure = (write_rounds_png if rounds else write_epsilon_png)(shown, out / f"{name}.png", title=title)
        print(f"table: {out / f'{name}.md'}; figure: {figure}")
    else:
        print(f"table: {out / f'{name}.md'} (no private run: no figure)")
    return 0
