"""`python -m export all|keygen|verify`: export a checkpoint to signed on-device models.

Bad input prints one `error: ...` line naming the file or flag and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from export import ExportError


def _formats(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("all", help="export ONNX, TFLite and Core ML with a parity report and signed manifest")
    run.add_argument("--checkpoint", type=Path, required=True, help="RUN/model.pt written by the trainer")
    run.add_argument("--out", type=Path, required=True, help="output folder DIST (built aside, renamed in)")
    run.add_argument("--formats", type=_formats, default=("onnx", "tflite", "coreml"),
                     help="comma list of onnx (fp32+int8), tflite (int8), tflite-fp32, coreml "
                          "(default: onnx,tflite,coreml)")
    run.add_argument("--key", type=Path, help="private.key from `keygen` (default: a DEVELOPMENT key, with a warning)")
    run.add_argument("--version", dest="model_version", type=int, default=1, help="model_version (monotonic, default 1)")
    run.add_argument("--calibration", type=Path, help="folder of calibration photos (default: synthetic fundus photos)")
    run.add_argument("--calibration-images", type=int, default=100, help="number of calibration images (default 100; int8 activations "
                          "are considered only from 43 up: parity.MIN_SELECTION_IMAGES)")
    run.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                     help="ONNX Runtime activation calibration (default minmax)")
    run.add_argument("--test-data", type=Path, help="labelled APTOS-layout folder for the parity report "
                                                    "(default: synthetic photos, another seed)")
    run.add_argument("--test-images", type=int, default=200, help="number of parity images (default 200)")
    run.add_argument("--min-agreement", type=float, default=0.98,
                     help="refuse when an artifact's top-1 or referable-decision agreement with fp32 torch "
                          "is below this (default 0.98)")
    run.add_argument("--force", action="store_true", help="export even below --min-agreement")
    run.add_argument("--allow-seeded", action="store_true",
                     help="export a checkpoint trained with a test-only noise seed, marked 'no DP guarantee: "
                          "test build' everywhere it shows epsilon")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (swapped in at the end)")
    run.add_argument("--latency-runs", type=int, default=20, help="timed runs per artifact (default 20)")
    run.add_argument("--policy", type=Path, help="TOML with [quality] and [referral] tables")
    run.add_argument("--refer-at-grade", type=int, help="referral: P(referable) = P(grade >= this) (default 2)")
    run.add_argument("--min-confidence", type=float,
                     help="referral: call the grade uncertain below this confidence (default 0.6)")
    run.add_argument("--target-sensitivity", type=float,
                     help="choose the referral threshold for this referable sensitivity (default 0.9)")
    run.add_argument("--referral-threshold", type=float, help="use this P(referable) threshold instead of choosing one")
    run.add_argument("--uncertain-width", type=float,
                     help="uncertain band above the threshold, headlined 'Uncertain: refer' (default 0.25)")
    run.add_argument("--ungradable-attempts", type=int,
                     help="refused photos of one eye before 'could not be graded: refer' (default 3)")
    run.add_argument("--clinical-data", type=Path,
                     help="labelled held-out photos (APTOS layout) for the threshold and calibration; private "
                          "by default: their use is outside epsilon (default: synthetic photos, not validated)")
    run.add_argument("--clinical-data-public", action="store_true", help="--clinical-data is public data")
    run.add_argument("--clinical-images", type=int, default=300,
                     help="synthetic held-out photos when there is no --clinical-data (default 300)")
    run.add_argument("--ood-images", type=int, default=200,
                     help="public synthetic photos for the out-of-distribution statistics (default 200)")
    run.add_argument("--ood-false-flag", type=float, default=0.01,
                     help="share of public fundus photos the out-of-distribution check may flag (default 0.01)")
    run.add_argument("--author", default="Dopamine project", help="model author (Core ML metadata)")
    run.add_argument("--license", default="Research use only; not a certified medical device",
                     help="model licence (Core ML metadata)")

    keygen = sub.add_parser("keygen", help="make an Ed25519 key pair (private.key 0600, public.key)")
    keygen.add_argument("--out", type=Path, required=True, help="key folder (never inside a DIST)")
    keygen.add_argument("--overwrite", action="store_true", help="replace an existing key pair")

    verify = sub.add_parser("verify", help="check manifest.sig and every artifact's sha256 and size")
    verify.add_argument("dist", type=Path, help="an export folder")
    verify.add_argument("--key", type=Path, required=True, help="public.key to trust")
    return parser


def _run_all(args) -> int:
    from export.bundle import ExportOptions, export_all
    from export.clinical import ClinicalOptions

    overrides = {"referral": {"refer_at_grade": args.refer_at_grade, "min_confidence": args.min_confidence,
                              "target_sensitivity": args.target_sensitivity, "threshold": args.referral_threshold,
                              "uncertain_width": args.uncertain_width,
                              "ungradable_attempts": args.ungradable_attempts}}
    opts = ExportOptions(
        checkpoint=args.checkpoint, out=args.out, formats=args.formats, key=args.key,
        model_version=args.model_version, calibration_dir=args.calibration,
        calibration_images=args.calibration_images, test_dir=args.test_data, test_images=args.test_images,
        calibration_method=args.calibration_method, min_agreement=args.min_agreement, force=args.force,
        allow_seeded=args.allow_seeded,
        overwrite=args.overwrite, latency_runs=args.latency_runs, policy_toml=args.policy,
        policy_overrides=overrides, author=args.author, license=args.license,
        clinical_opts=ClinicalOptions(data_dir=args.clinical_data, data_public=args.clinical_data_public,
                                      images=args.clinical_images, ood_images=args.ood_images,
                                      ood_false_flag=args.ood_false_flag))
    out = export_all(opts, log=lambda line: print(line, flush=True))
    print(f"wrote {out} (see {out / 'report.md'})")
    return 0


def _run_verify(args) -> int:
    from export import signing
    from edge_client.fileio import sha256_file

    dist = args.dist
    try:
        data = (dist / "manifest.json").read_bytes()
        sig = (dist / "manifest.sig").read_bytes()
    except OSError as exc:
        raise ExportError(f"{exc.filename}: cannot read ({exc.strerror})") from exc
    signing.verify_manifest(data, sig, args.key)
    manifest = json.loads(data)
    for art in manifest["artifacts"]:
        path = dist / art["name"]
        if not path.is_file():
            raise ExportError(f"{path}: listed in the manifest but missing")
        if path.stat().st_size != art["size"] or sha256_file(path) != art["sha256"]:
            raise ExportError(f"{path}: size or sha256 differs from the manifest")
    print(f"ok: {dist} signature and {len(manifest['artifacts'])} artifacts verified")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input or refused export)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "keygen":
            from export import signing

            private, public = signing.generate_keypair(args.out, overwrite=args.overwrite)
            print(f"wrote {private} (keep secret, mode 0600) and {public} (give to devices and the hub)")
            return 0
        if args.command == "verify":
            return _run_verify(args)
        return _run_all(args)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
