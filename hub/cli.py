"""`python -m hub init|configure|publish|withdraw|versions|serve|token|updates|aggregate` ."""
from __future__ import annotations

import argparse
import socket
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
    _aggregation_flags(s)

    s = sub.add_parser("configure", help="device-update aggregation settings")
    s.add_argument("--root", required=True, type=Path)
    _aggregation_flags(s)

    s = sub.add_parser("publish", help="add a signed bundle (DIST) as a new version")
    s.add_argument("dist", type=Path)
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--key", type=Path, help="publisher public key (default: ROOT/publisher.key)")
    s.add_argument("--checkpoint", type=Path, help="RUN/model.pt DIST was exported from (kept privately: "
                                                   "device updates build on it)")

    s = sub.add_parser("withdraw", help="stop offering a version")
    s.add_argument("version", type=int)
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--reason", default="")

    s = sub.add_parser("versions", help="list versions and their status")
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate (enables HTTPS)")
    s.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    s.add_argument("--max-body-bytes", type=int, default=None)
    s.add_argument("--log-level", default="warning")
    s.add_argument("--throttle-bytes-per-s", type=int, default=None, help=argparse.SUPPRESS)

    s = sub.add_parser("updates", help="list received device updates")
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("aggregate", help="build and publish the next version if enough device updates wait")
    s.add_argument("--root", required=True, type=Path)

    s = sub.add_parser("token", help="device upload tokens")
    tsub = s.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("issue", help="print a new token once (only its hash is stored)")
    t.add_argument("--name", required=True)
    t.add_argument("--root", required=True, type=Path)
    t = tsub.add_parser("revoke")
    t.add_argument("name", help="token name or id")
    t.add_argument("--root", required=True, type=Path)
    t = tsub.add_parser("list")
    t.add_argument("--root", required=True, type=Path)
    return p


def _aggregation_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--signing-key", type=Path, help="export private.key; copied to ROOT/private/ (0600) to sign "
                                                    "versions built from device updates")
    s.add_argument("--min-updates", type=int, help="device updates for the current version that trigger the "
                                                   "next version (default 3)")
    s.add_argument("--export-formats", help="formats of versions built from device updates "
                                            "(default onnx,tflite,coreml)")
    s.add_argument("--export-arg", action="append", dest="export_args", metavar="ARG",
                   help="extra argument for `python -m export all` (repeat; replaces the stored list)")


def _configure(args) -> None:
    from hub.device_updates import install_signing_key, write_config

    try:
        if args.min_updates is not None and args.min_updates < 1:
            raise ValueError("--min-updates must be >= 1")
        if args.signing_key:
            reg = Registry(args.root)
            try:
                install_signing_key(args.root, args.signing_key, reg.publisher_key())
            finally:
                reg.close()
        config = write_config(args.root, min_updates=args.min_updates, export_formats=args.export_formats,
                              export_args=args.export_args)
    except ValueError as exc:
        raise HubError(str(exc)) from None
    print(f"aggregation: min_updates={config['min_updates']}, formats={config['export_formats']}, "
          f"signing key {'installed' if args.signing_key else 'unchanged'}")


def _serve(args) -> int:
    import uvicorn

    from hub.server import MAX_BODY_BYTES, create_app

    Registry(args.root).close()  # fail now, with a clear message, if ROOT is not a hub
    if bool(args.tls_cert) != bool(args.tls_key):
        raise HubError("--tls-cert and --tls-key go together")
    for path in (args.tls_cert, args.tls_key):
        if path and not path.is_file():
            raise HubError(f"{path}: TLS file not found")
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
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=args.log_level,
                            ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
                            ssl_keyfile=str(args.tls_key) if args.tls_key else None,
                            h11_max_incomplete_event_size=16 * 1024, timeout_keep_alive=5)
    scheme = "https" if args.tls_cert else "http"
    print(f"hub serving {scheme}://{args.host}:{port} from {args.root}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            init_hub(args.root, args.publisher_key)
            print(f"hub initialised at {args.root}")
            _configure(args)
            return 0
        if args.command == "configure":
            _configure(args)
            return 0
        if args.command == "aggregate":
            from hub.aggregation import aggregate

            aggregate(args.root, log=lambda line: print(line, flush=True))
            return 0
        if args.command == "serve":
            return _serve(args)
        reg = Registry(args.root)
        try:
            if args.command == "publish":
                if args.checkpoint and not args.checkpoint.is_file():
                    raise HubError(f"{args.checkpoint}: checkpoint not found")
                version = reg.publish(args.dist, key=args.key)
                if args.checkpoint:
                    reg.store_checkpoint(version, args.checkpoint)
                print(f"published version {version} from {args.dist}")
            elif args.command == "updates":
                print(f"{'id':>4}  {'token':>5}  {'received':<20}  {'base':>4}  {'epsilon':>7}  {'status':<10}  into")
                for r in reg.db.execute("SELECT id, token_id, received, base_version, epsilon, status, "
                                        "aggregated_into FROM updates ORDER BY id").fetchall():
                    eps = f"{r[4]:.2f}" if r[4] is not None else "-"
                    print(f"{r[0]:>4}  {r[1]:>5}  {r[2]:<20}  {r[3] if r[3] is not None else '-':>4}  {eps:>7}  "
                          f"{r[5]:<10}  {r[6] or ''}")
            elif args.command == "withdraw":
                reg.withdraw(args.version, args.reason)
                print(f"withdrew version {args.version}")
            elif args.command == "versions":
                print(f"{'version':>7}  {'status':<9}  {'published':<20}  created")
                for v in reg.versions():
                    print(f"{v['version']:>7}  {v['status']:<9}  {v['published']:<20}  {v['created']}")
            elif args.token_command == "issue":
                print(reg.issue_token(args.name))
            elif args.token_command == "revoke":
                reg.revoke_token(args.name)
                print(f"revoked {args.name}")
            else:
                print(f"{'id':>3}  {'name':<24}  {'created':<20}  revoked")
                for t in reg.tokens():
                    print(f"{t['id']:>3}  {t['name']:<24}  {t['created']:<20}  {t['revoked'] or '-'}")
        finally:
            reg.close()
        return 0
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
