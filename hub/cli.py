"""`python -m hub init|configure|delegate|publish|withdraw|minimum|versions|serve|token|updates|aggregate|
pending|approve|reject`.

Bad input prints one `error: ...` line naming the file or flag and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hub.registry import HubError, Registry, init_hub

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hub", description="Dopamine model hub")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init", help="create a hub folder trusting one publisher key")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--publisher-key", required=True, type=Path, help="public.key of the exporter")
    _config_flags(s)

    s = sub.add_parser("configure", help="device-update, approval and model-list settings (hub.json)")
    s.add_argument("--root", required=True, type=Path)
    _config_flags(s)

    s = sub.add_parser("delegate", help="sign the root that lets this hub's online key sign the model list")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--signing-key", required=True, type=Path, help="the publisher's private.key (not kept)")
    s.add_argument("--rotate", action="store_true", help="replace the index key (a new root version)")

    s = sub.add_parser("publish", help="add a signed bundle (DIST) as a new version")
    s.add_argument("dist", type=Path)
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--key", type=Path, help="publisher public key (default: ROOT/publisher.key)")
    s.add_argument("--checkpoint", type=Path, help="RUN/model.pt DIST was exported from (kept privately: "
                                                   "device updates build on it)")
    s.add_argument("--allow-seeded", action="store_true", help="publish a seeded (test) bundle, marked "
                                                               "'no DP guarantee: test build'")

    s = sub.add_parser("withdraw", help="stop offering a version (devices refuse it)")
    s.add_argument("version", type=int)
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--reason", default="")

    s = sub.add_parser("minimum", help="the lowest version devices may install (in the signed model list)")
    s.add_argument("version", type=int)
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("versions", help="list versions and their status")
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate (enables HTTPS)")
    s.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    s.add_argument("--insecure-http", action="store_true", help="serve plain HTTP on a non-loopback address "
                                                                "(tokens in clear: a trusted network only)")
    s.add_argument("--max-body-bytes", type=int, default=None)
    s.add_argument("--log-level", default="warning")
    s.add_argument("--throttle-bytes-per-s", type=int, default=None, help=argparse.SUPPRESS)

    s = sub.add_parser("updates", help="list received device updates")
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("aggregate", help="build a candidate version if enough devices' updates wait")
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("pending", help="candidate versions awaiting approval, with validation and parity")
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("approve", help="sign and publish a candidate version")
    s.add_argument("version", type=int)
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("reject", help="discard a candidate version (its updates are not used again)")
    s.add_argument("version", type=int)
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--reason", default="")

    s = sub.add_parser("token", help="device upload tokens")
    tsub = s.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("issue", help="a new token, printed once or written to --out (only its hash is stored)")
    t.add_argument("--name", required=True)
    t.add_argument("--root", required=True, type=Path)
    t.add_argument("--out", type=Path, help="write the token to this new file (0600) instead of printing it")
    t = tsub.add_parser("revoke", help="revoke a token; its pending updates are dropped")
    t.add_argument("name", help="token name or id")
    t.add_argument("--root", required=True, type=Path)
    t = tsub.add_parser("list")
    t.add_argument("--root", required=True, type=Path)
    return p


def _flag(s, name: str, **kw) -> None:
    s.add_argument(name, default=None, **kw)


def _config_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--signing-key", type=Path, help="the publisher's private.key: kept in ROOT/private/ (0600) to sign "
                                                    "approved versions built from device updates, and used to sign "
                                                    "the model-list delegation")
    _flag(s, "--min-updates", type=int, help="distinct devices whose updates build a candidate (default 3)")
    _flag(s, "--export-formats", help="formats of versions built from device updates (default onnx,tflite,coreml)")
    s.add_argument("--export-arg", action="append", dest="export_args", metavar="ARG",
                   help="extra argument for `python -m export all` (repeat; replaces the stored list)")
    _flag(s, "--validation-data", help="the hub's held-out labelled folder (shown at approval; gates --auto-approve)")
    _flag(s, "--robust-mean", choices=("norm-clipped", "trimmed", "median"), help="how updates are averaged")
    _flag(s, "--device-patient-cap", type=int, help="public cap N on patients per device: updates need delta < 1/N")
    _flag(s, "--index-ttl", type=int, dest="index_ttl_seconds", help="lifetime of the signed model list, seconds")
    _flag(s, "--rate-limit", type=int, dest="rate_limit_per_minute", help="uploads per device token per minute")
    _flag(s, "--min-batch-divisor", type=float, help="public floor on a device's step divisor B (norm bound)")
    s.add_argument("--auto-approve", action=argparse.BooleanOptionalAction, default=None,
                   help="publish candidates without `hub approve` when held-out accuracy does not drop")
    s.add_argument("--allow-seeded", action=argparse.BooleanOptionalAction, default=None,
                   help="build on a seeded (test) base checkpoint, marked 'no DP guarantee: test build'")


def _check_signing_key(private_key: Path, publisher_key_file: Path) -> None:
    from export import ExportError
    from export.signing import load_public_key, load_publisher_private_key

    try:
        load_publisher_private_key(private_key, bytes(load_public_key(publisher_key_file)))
    except ExportError as exc:
        raise HubError(str(exc)) from None


def _configure(args, *, init: bool = False) -> None:
    from hub.device_updates import install_signing_key, write_config
    from hub.index import delegate, has_index

    keys = ("min_updates", "export_formats", "export_args", "validation_data", "robust_mean", "device_patient_cap",
            "index_ttl_seconds", "rate_limit_per_minute", "min_batch_divisor", "auto_approve", "allow_seeded")
    try:
        if args.validation_data is not None and not Path(args.validation_data).is_dir():
            raise ValueError(f"{args.validation_data}: --validation-data folder not found")
        if args.signing_key:
            reg = Registry(args.root)
            try:
                install_signing_key(args.root, args.signing_key, reg.publisher_key())
            finally:
                reg.close()
        config = write_config(args.root, **{k: getattr(args, k) for k in keys})
    except ValueError as exc:
        raise HubError(str(exc)) from None
    if args.signing_key and not has_index(args.root):
        print(f"model list delegated to this hub's index key (root version {delegate(args.root, args.signing_key)})")
    print(f"settings: min_updates={config['min_updates']}, robust_mean={config['robust_mean']}, "
          f"auto_approve={config['auto_approve']}, validation_data={config['validation_data']}, "
          f"device_patient_cap={config['device_patient_cap']}, signing key "
          f"{'installed' if args.signing_key else 'unchanged'}")
    if init and not has_index(args.root):
        print("warning: no signed model list yet: devices refuse to sync until you run "
              "`python -m hub delegate --root ROOT --signing-key private.key`", file=sys.stderr)


def _serve(args) -> int:
    import socket

    import uvicorn

    from edge_client.fetcher import is_loopback
    from hub.index import has_index, signed_index
    from hub.server import MAX_BODY_BYTES, create_app

    reg = Registry(args.root)  # fail now, with a clear message, if ROOT is not a hub; migrate its schema
    try:
        swept = reg.sweep()  # what a killed publish left behind
    finally:
        reg.close()
    if swept:
        print(f"removed unfinished version folders: {', '.join(swept)}", file=sys.stderr)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise HubError("--tls-cert and --tls-key go together")
    for path in (args.tls_cert, args.tls_key):
        if path and not path.is_file():
            raise HubError(f"{path}: TLS file not found")
    if not args.tls_cert and not is_loopback(args.host):
        if not args.insecure_http:
            raise HubError(f"refusing to serve plain HTTP on {args.host}: device tokens and model choices would cross "
                           f"the network in clear; pass --tls-cert/--tls-key (or --insecure-http on a trusted network)")
        bar = "!" * 78
        print(f"{bar}\nWARNING: serving plain HTTP on {args.host}: upload tokens travel in clear.\n{bar}",
              file=sys.stderr, flush=True)
    if has_index(args.root):
        signed_index(args.root)
    else:
        print("warning: no signed model list: devices refuse to sync (run `python -m hub delegate`)", file=sys.stderr)
    app = create_app(args.root, max_body_bytes=args.max_body_bytes or MAX_BODY_BYTES,
                     throttle_bytes_per_s=args.throttle_bytes_per_s)
    # Bind here so port 0 works and the real port is printed before serving.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        raise HubError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from None
    sock.listen(512)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=args.log_level,
                            ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
                            ssl_keyfile=str(args.tls_key) if args.tls_key else None,
                            h11_max_incomplete_event_size=16 * 1024, timeout_keep_alive=5)
    scheme = "https" if args.tls_cert else "http"
    print(f"hub serving {scheme}://{args.host}:{port} from {args.root}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _refresh_index(root: Path) -> None:
    from hub.index import has_index, signed_index

    if has_index(root):
        signed_index(root)


def _issue_token(reg: Registry, args) -> None:
    token = reg.issue_token(args.name)
    if args.out is None:
        print(token)
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(args.out, flags, 0o600)
    except OSError as exc:
        reg.revoke_token(args.name)
        raise HubError(f"{args.out}: cannot create the token file ({exc.strerror}); the token was revoked") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    print(f"wrote the token for {args.name} to {args.out} (0600); give it to the device, then delete it here")


def _run(args, reg: Registry) -> None:
    from hub import cli_report

    if args.command == "publish":
        cli_report.publish(reg, args)
        _refresh_index(args.root)
    elif args.command == "updates":
        cli_report.updates(reg)
    elif args.command == "withdraw":
        reg.withdraw(args.version, args.reason)
        _refresh_index(args.root)
        print(f"withdrew version {args.version}")
    elif args.command == "minimum":
        from hub.device_updates import write_config

        if args.version < 0:
            raise HubError("the minimum version must be >= 0")
        write_config(args.root, minimum_version=args.version)
        _refresh_index(args.root)
        print(f"devices now refuse versions below {args.version}")
    elif args.command == "versions":
        cli_report.versions(reg)
    elif args.command == "pending":
        cli_report.pending(reg)
    elif args.token_command == "issue":
        _issue_token(reg, args)
    elif args.token_command == "revoke":
        _tokens, dropped = reg.revoke_token(args.name)
        print(f"revoked {args.name}; dropped {dropped} pending update(s)")
    else:
        cli_report.tokens(reg)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            if args.signing_key:   # refused before the hub folder exists, not after
                _check_signing_key(args.signing_key, args.publisher_key)
            init_hub(args.root, args.publisher_key)
            print(f"hub initialised at {args.root}")
            _configure(args, init=True)
            return 0
        if args.command == "configure":
            _configure(args)
            return 0
        if args.command == "delegate":
            from hub.index import delegate

            print(f"model list delegated to this hub's index key: root version "
                  f"{delegate(args.root, args.signing_key, rotate=args.rotate)}")
            return 0
        if args.command == "aggregate":
            from hub.aggregation import aggregate

            aggregate(args.root, log=lambda line: print(line, flush=True))
            return 0
        if args.command in ("approve", "reject"):
            from hub.approval import approve, reject

            if args.command == "approve":
                approve(args.root, args.version, log=lambda line: print(line, flush=True))
            else:
                reject(args.root, args.version, args.reason)
                print(f"rejected candidate version {args.version}")
            return 0
        if args.command == "serve":
            return _serve(args)
        reg = Registry(args.root)
        try:
            _run(args, reg)
        finally:
            reg.close()
        return 0
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad hub.json
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
