"""`python -m hub init|publish|withdraw|versions|serve|token` ."""
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

    s = sub.add_parser("publish", help="add a signed bundle (DIST) as a new version")
    s.add_argument("dist", type=Path)
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--key", type=Path, help="publisher public key (default: ROOT/publisher.key)")

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
            return 0
        if args.command == "serve":
            return _serve(args)
        reg = Registry(args.root)
        try:
            if args.command == "publish":
                version = reg.publish(args.dist, key=args.key)
                print(f"published version {version} from {args.dist}")
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
