"""The empirical privacy audit, every mode and two mechanisms broken on purpose: claimed ε beside
the one-run lower bound (Steinke, Nasr, Jagielski 2023), and the membership-inference figure.

    .venv/bin/python benchmarks/bench_audit.py --work /tmp/evidence [--difficulty D] [--canaries 5000]
        [--epochs 2] [--sample-rate 0.1] [--size 32] [--threads 1] [--device cpu] [--docs]

On the sweep's task (the hospitals' synthetic patients, K = 10, from the public model). The broken
mechanisms use the harness's test-only option (`run_audit(test_only_break=...)`), which no command
exposes. Writes WORK/audit/audit.md, audit.json, audit_scores.npz (every canary's score and
membership, to redraw the figure) and audit_roc.png; `--docs` copies the table and
the figure to docs/audit.md and docs/audit_roc.png.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evidence_common import REPO, evidence_parser, hospitals, parse, public_body  # noqa: E402

from edge_client.fileio import atomic_write_text  # noqa: E402
from trainer.audit.harness import audit_config, run_audit  # noqa: E402
from trainer.audit.report import audit_table_md, lower_str, write_roc_png  # noqa: E402

# (mode, claimed ε, test-only break): ε = 2 is where one run at δ = 1e-5 can refute a claim
# (it shows at most ~5.9 with 5000 canaries); the ε = 8 rows show that ceiling.
AUDITS = [("central", None, None), ("fedavg", None, None),
          ("central-dp", 2.0, None), ("fl-parallel-dp", 2.0, None), ("dopamine", 2.0, None),
          ("dopamine", 2.0, "noise-off"), ("dopamine", 2.0, "known-seed"), ("central-dp", 2.0, "noise-off"),
          ("dopamine", 8.0, None), ("dopamine", 8.0, "noise-off")]
IN_FIGURE = [0, 4, 8, 5]   # central, dopamine ε = 2, dopamine ε = 8, dopamine ε = 2 with the noise off


def main() -> int:
    parser = evidence_parser(__doc__.splitlines()[0])
    parser.add_argument("--canaries", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sample-rate", type=float, default=0.1)
    args = parse(parser)
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    started, load = time.time(), os.getloadavg()[0]
    body = public_body(args.work, size=args.size, threads=args.threads, device=args.device)
    data = hospitals(args.work, size=args.size, difficulty=args.difficulty)
    results = []
    for mode, epsilon, broken in AUDITS:
        config = audit_config(mode, data=str(data), weights=str(body), weights_public=True, target_epsilon=epsilon,
                              epochs=args.epochs, sample_rate=args.sample_rate, hospitals=10, image_size=args.size,
                              device=args.device, threads=args.threads)
        result = run_audit(config, canaries=args.canaries, test_only_break=broken)
        results.append(result)
        print(f"{mode} {broken or ''}: claimed {result.epsilon}, empirical >= {lower_str(result.epsilon_lower)}, "
              f"{result.seconds:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    out = args.work / "audit"
    out.mkdir(parents=True, exist_ok=True)
    note = (f"{len(results)} audits, {args.canaries} canaries each, {args.epochs} epochs at q = {args.sample_rate:g}, "
            f"K = 10, {args.size} px, difficulty {args.difficulty:g}; {time.time() - started:.0f} s on {args.device} "
            f"(1-min load at start {load:.1f}, {os.cpu_count()} CPUs)")
    table = audit_table_md(results)
    atomic_write_text(out / "audit.md", table + "\n" + note + "\n")
    atomic_write_text(out / "audit.json", json.dumps({"results": [r.to_dict() for r in results], "note": note},
                                                     indent=2) + "\n")
    np.savez_compressed(out / "audit_scores.npz", **{f"scores_{i}": r.scores for i, r in enumerate(results)},
                        **{f"included_{i}": r.included for i, r in enumerate(results)})
    write_roc_png([results[i] for i in IN_FIGURE], out / "audit_roc.png",
                  title=f"membership inference on {args.canaries} gradient canaries")
    print(table + "\n" + note)
    if args.docs:
        shutil.copyfile(out / "audit.md", REPO / "docs" / "audit.md")
        shutil.copyfile(out / "audit_roc.png", REPO / "docs" / "audit_roc.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
