"""`python -m trainer audit`: train each mode once with m gradient canaries and report an empirical
lower bound on ε (95 % confidence by default) beside the accountant's ε.

Writes OUT/audit.json, OUT/audit.md (the table) and OUT/audit_roc.png (membership inference on the
canaries, TPR against FPR). Exits 1 when a bound exceeds its mode's claimed ε (the claim is
refuted), 0 otherwise. Threat model and method: trainer/audit/harness.py and docs/EVIDENCE.md.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

from edge_client.fileio import atomic_write_text
from trainer.config import MODES, PRIVATE_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="data folder (the canaries are added to it in memory)")
    parser.add_argument("--modes", default="central,dopamine", help="comma-separated subset of " + ",".join(MODES))
    parser.add_argument("--target-epsilon", type=float, default=2.0,
                        help="ε the private modes are calibrated to (default 2: one run at δ=1e-5 cannot "
                             "show much above 6, see docs/EVIDENCE.md)")
    parser.add_argument("--canaries", type=int, default=1000, help="m (default 1000)")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the data (default 2)")
    parser.add_argument("--sample-rate", type=float, default=0.1, help="q of the private modes (default 0.1)")
    parser.add_argument("--hospitals", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--weights", help="start from this body (model.pt or state dict)")
    parser.add_argument("--weights-public", action="store_true", help="declare that --weights saw no patient of --data")
    parser.add_argument("--max-patients", type=int)
    parser.add_argument("--seed", type=int, default=0, help="experiment seed (split, init); never the noise")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", default="runs/audit")


def run(args: argparse.Namespace) -> int:
    from trainer.audit.harness import audit_config, run_audit
    from trainer.audit.report import audit_table_md, lower_str, write_roc_png
    from trainer.sweep.plan import parse_list
    modes = parse_list(args.modes, str, "--modes", allowed=MODES)
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), got {args.confidence}")
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    out = Path(args.out)
    started, load = time.time(), os.getloadavg()[0]
    results = []
    for mode in modes:
        config = audit_config(mode, data=args.data, weights=args.weights, weights_public=args.weights_public,
                              target_epsilon=args.target_epsilon if mode in PRIVATE_MODES else None,
                              epochs=args.epochs, sample_rate=args.sample_rate, hospitals=args.hospitals,
                              image_size=args.image_size, delta=args.delta, seed=args.seed, device=args.device,
                              threads=args.threads, max_patients=args.max_patients)
        result = run_audit(config, canaries=args.canaries, confidence=args.confidence)
        results.append(result)
        print(f"{mode}: empirical epsilon >= {lower_str(result.epsilon_lower)} "
              f"({result.confidence:.0%}), claimed {result.epsilon}; {result.seconds:.0f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    note = (f"{len(modes)} audits, {time.time() - started:.0f} s on {args.device} "
            f"(1-min load at start {load:.1f}, {os.cpu_count()} CPUs)")
    atomic_write_text(out / "audit.json", json.dumps({"results": [r.to_dict() for r in results], "note": note},
                                                     indent=2) + "\n")
    table = audit_table_md(results)
    atomic_write_text(out / "audit.md", table + "\n" + note + "\n")
    write_roc_png(results, out / "audit_roc.png", title=f"membership inference on {args.canaries} canaries")
    print(table)
    print(note)
    refuted = [r.mode for r in results if r.flagged]
    if refuted:
        print(f"REFUTED: the empirical lower bound exceeds the claimed epsilon for {', '.join(refuted)}")
        return 1
    return 0
