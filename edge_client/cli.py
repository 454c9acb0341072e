"""`python -m edge_client sync|diagnose|history|rollback|status` (state folder: --home, $EDGE_HOME, app data)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_client.errors import EdgeError, PhotoQualityError
from edge_client.manifest import ManifestError
from edge_client.preprocess import ImageError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help="state folder (default: $EDGE_HOME, else app data)")
    p = argparse.ArgumentParser(prog="python -m edge_client", parents=[common],
                                description="Dopamine edge client: sync a signed model, grade fundus photos offline")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sync", parents=[common], help="fetch and install the hub's latest model")
    s.add_argument("--server", required=True, help="hub URL, e.g. http://127.0.0.1:8000")
    s.add_argument("--key", help="publisher public key (file or base64); pinned on first use")
    s.add_argument("--ca-file", help="CA bundle (PEM) for an https hub with a private CA")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s = sub.add_parser("diagnose", parents=[common], help="grade one photo on the device")
    s.add_argument("image", type=Path)
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--keep-photo", action="store_true", help="also keep a copy of the photo")
    s = sub.add_parser("history", parents=[common], help="list stored results (newest first)")
    s.add_argument("--csv", type=Path, help="export to this CSV file instead")
    sub.add_parser("rollback", parents=[common], help="switch back to the previous installed model")
    sub.add_parser("status", parents=[common], help="show the installed model")
    return p


def _print_progress(done: int, total: int) -> None:
    sys.stderr.write(f"\rdownloading {done * 100 // max(total, 1):3d}% ({done}/{total} bytes)")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _run(args) -> int:
    from edge_client.api import EdgeClient

    client = EdgeClient(getattr(args, "home", None))
    if args.command == "sync":
        result = client.sync(args.server, public_key=args.key, ca_file=args.ca_file,
                             progress=None if args.quiet else _print_progress)
        print(result.message)
        return 0
    if args.command == "diagnose":
        try:
            d = client.diagnose(args.image, keep_photo=args.keep_photo)
        except PhotoQualityError as exc:
            if args.json:
                print(json.dumps({"refused": exc.reason, "hint": exc.hint, "measures": exc.measures}))
            else:
                print(f"refused: {exc.hint}", file=sys.stderr)
            return 3
        if client.notice:
            print(f"warning: {client.notice}", file=sys.stderr)
        if args.json:
            print(json.dumps(d.to_dict(), indent=2))
        else:
            probs = "  ".join(f"{p:.2f}" for p in d.probabilities)
            eps = f"epsilon={d.epsilon}, delta={d.delta} ({d.accountant})" if d.epsilon is not None else "no DP guarantee"
            print(f"grade {d.grade}: {d.grade_name} (confidence {d.confidence:.0%})\n"
                  f"probabilities: {probs}\n{d.advice}\n"
                  f"model version {d.model_version}; privacy: {eps}; {d.seconds * 1000:.0f} ms")
        return 0
    if args.command == "history":
        if args.csv:
            print(f"wrote {client.export_history_csv(args.csv)}")
            return 0
        print(f"{'id':>4}  {'time':<20}  {'grade':<22}  {'refer':<5}  model  image sha256")
        for e in client.history():
            print(f"{e.id:>4}  {e.time:<20}  {e.grade} {e.grade_name:<20}  {'yes' if e.refer else 'no':<5}  "
                  f"{e.model_version:>5}  {e.image_sha256[:16]}")
        return 0
    if args.command == "rollback":
        print(f"now using model version {client.rollback()}")
        return 0
    model = client.installed_model()
    if client.notice:
        print(f"warning: {client.notice}", file=sys.stderr)
    if model is None:
        print("no model installed: run sync")
        return 1
    print(json.dumps(model.__dict__, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (EdgeError, ImageError, ManifestError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
