"""The publisher's public key the app trusts before its first sync: built in, pasted or scanned.

Build step (docs/MOBILE.md), run once before `buildozer` or kivy-ios packages the app:

    python -m mobile_app.provision --key keys/public.key

writes `mobile_app/publisher_key.json`, which ships inside the app (buildozer includes *.json).
Settings shows the key's fingerprint; a health worker can replace it, before the first sync, by
pasting the key or scanning it as a QR code. The first sync that verifies a manifest under it
pins it in the edge client's trust store; from then on the pinned key is the only one trusted.

Pure Python (no Kivy): the build step runs on a build machine, the tests without a window.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from edge_client.fileio import atomic_write_text

BUNDLED_KEY_FILE = Path(__file__).with_name("publisher_key.json")
FORMAT = "dopamine-publisher-key"
KEY_BYTES = 32
QR_PREFIX = "dopamine-publisher-key:"   # optional in a QR payload; plain base64 works too

__all__ = ["BUNDLED_KEY_FILE", "KeyChoice", "PublisherKeyError", "choose_key", "encode_key", "fingerprint",
           "main", "parse_key", "read_bundled", "write_bundled"]


class PublisherKeyError(ValueError):
    """Text that is not a publisher key, or a damaged built-in key file (the message says which)."""


def parse_key(text: str, *, source: str = "the key") -> bytes:
    """The raw 32-byte Ed25519 key from what a person pasted or a QR code held.

    Accepts the base64 text `export keygen` writes to public.key, with blanks or line breaks
    anywhere (pasting wraps long lines) and an optional "dopamine-publisher-key:" prefix.

    Raises:
        PublisherKeyError: empty, not base64, or not 32 bytes; the message names `source`.
    """
    compact = "".join(str(text).split())
    if compact.lower().startswith(QR_PREFIX):
        compact = compact[len(QR_PREFIX):]
    if not compact:
        raise PublisherKeyError(f"{source} is empty")
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise PublisherKeyError(f"{source} is not base64 text") from None
    if len(raw) != KEY_BYTES:
        raise PublisherKeyError(f"{source} holds {len(raw)} bytes; a publisher key has {KEY_BYTES}")
    return raw


def encode_key(raw: bytes) -> str:
    """The base64 text of a raw key (as public.key holds it)."""
    return base64.b64encode(raw).decode("ascii")


def fingerprint(raw: bytes) -> str:
    """What a person compares by eye: the first 8 bytes of the key's sha256, "3F2A 9C01 77B4 E2D0"."""
    digest = hashlib.sha256(raw).hexdigest()[:16].upper()
    return " ".join(digest[i:i + 4] for i in range(0, 16, 4))


def write_bundled(raw: bytes, path: str | Path = BUNDLED_KEY_FILE) -> Path:
    """Write the key the app is built with (atomically). Returns the path written."""
    body = {"format": FORMAT, "format_version": 1, "public_key": encode_key(raw), "fingerprint": fingerprint(raw)}
    return atomic_write_text(path, json.dumps(body, indent=1) + "\n")


def read_bundled(path: str | Path = BUNDLED_KEY_FILE) -> bytes | None:
    """The key the app was built with, or None when the build shipped none.

    Raises:
        PublisherKeyError: the file exists but is damaged (not this format, a bad key, or a
            fingerprint that does not match its key), naming the file.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PublisherKeyError(f"{path}: cannot read the built-in key ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise PublisherKeyError(f"{path}: not a {FORMAT} file")
    raw = parse_key(str(body.get("public_key", "")), source=f"{path}: public_key")
    if body.get("fingerprint") != fingerprint(raw):
        raise PublisherKeyError(f"{path}: the fingerprint does not match the key (damaged file)")
    return raw


@dataclass(frozen=True)
class KeyChoice:
    """The key the next sync uses and where it came from.

    source: "pinned" (trusted since a sync verified a model with it: the only one accepted),
    "entered" (pasted or scanned on this device), "bundled" (built into the app) or "none".
    """

    raw: bytes | None
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw) if self.raw else ""


def choose_key(*, pinned: bytes | None, entered: str, bundled: bytes | None) -> KeyChoice:
    """Pinned first (the device already trusts it), then one entered on the device, then the built-in one.

    Raises:
        PublisherKeyError: `entered` is set but is not a key (settings validate it on save).
    """
    if pinned:
        return KeyChoice(pinned, "pinned")
    if entered:
        return KeyChoice(parse_key(entered, source="the saved key"), "entered")
    if bundled:
        return KeyChoice(bundled, "bundled")
    return KeyChoice(None, "none")


def main(argv: list[str] | None = None) -> int:
    """`python -m mobile_app.provision --key public.key [--out FILE]`: the build step."""
    p = argparse.ArgumentParser(prog="python -m mobile_app.provision",
                                description="Build the publisher's public key into the app (before buildozer/kivy-ios).")
    p.add_argument("--key", required=True, help="the publisher's public.key (from `python -m export keygen`)")
    p.add_argument("--out", default=str(BUNDLED_KEY_FILE), help=f"where to write it (default: {BUNDLED_KEY_FILE})")
    args = p.parse_args(argv)
    try:
        raw = parse_key(Path(args.key).read_text(encoding="ascii", errors="replace"), source=args.key)
    except OSError as exc:
        print(f"error: {args.key}: cannot read ({exc.strerror or exc})", file=sys.stderr)
        return 2
    except PublisherKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        out = write_bundled(raw, args.out)
    except OSError as exc:
        print(f"error: {args.out}: cannot write ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(f"wrote {out}; fingerprint {fingerprint(raw)} (Settings shows it; compare it with the publisher's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
