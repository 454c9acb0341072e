"""Ed25519 keys and manifest signatures in the format devices read (docs/CONTRACTS.md).

Key files hold the raw 32-byte key, base64, on one line: ``private.key`` (mode 0600) and
``public.key``. ``manifest.sig`` holds the raw 64-byte signature over the exact bytes of
``manifest.json``, base64, on one line.
"""
from __future__ import annotations

import base64
import binascii
import os
import secrets
import sys
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from export import ExportError

PRIVATE_NAME = "private.key"
PUBLIC_NAME = "public.key"


class SignatureError(ExportError):
    """A signature that does not verify under the given public key."""


def _write_line(path: Path, data: bytes, mode: int, *, replace: bool = False) -> None:
    """Write one base64 line to ``path`` without ever following a planted link, durably.

    The bytes go to a fresh temporary name opened with O_CREAT|O_EXCL|O_NOFOLLOW (a symlink or
    any existing file there makes the open fail), are fsynced, and are then linked to ``path``:
    ``os.link`` fails if anything (a file or a dangling symlink) already sits at ``path``; with
    ``replace`` the rename replaces the entry itself, never a link's target. The folder is fsynced.

    Raises:
        ExportError: something already exists at ``path`` (and ``replace`` is False).
        OSError: the folder cannot be written.
    """
    from edge_client.fileio import fsync_dir

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask may have removed bits we asked for (never adds any)
            handle.write(base64.b64encode(data) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path, follow_symlinks=False)
            except FileExistsError:
                raise ExportError(f"{path}: already exists (a file or a link); refusing to write a key there") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)


def generate_private_key(path: str | Path, *, replace: bool = False) -> bytes:
    """Make a new Ed25519 private key file (mode 0600, written as ``_write_line`` does).

    Args:
        path: the key file. replace: replace an existing key (key rotation).

    Returns:
        The raw 32-byte public key.

    Raises:
        ExportError: the file exists (and ``replace`` is False) or cannot be written.
    """
    path = Path(path)
    key = SigningKey.generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_line(path, bytes(key), 0o600, replace=replace)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write the key ({exc.strerror})") from exc
    return bytes(key.verify_key)


def _read_key(path: str | Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: {what} key file not found")
    try:
        raw = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ExportError(f"{path}: not a base64 {what} key ({exc})") from exc
    if len(raw) != 32:
        raise ExportError(f"{path}: a {what} key is 32 bytes, this one is {len(raw)}")
    return raw


def generate_keypair(out_dir: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Make a new Ed25519 key pair in ``out_dir``.

    Args:
        out_dir: folder for ``private.key`` (mode 0600) and ``public.key``; created if missing.
        overwrite: replace an existing key pair (otherwise refused: a lost key orphans devices).

    Returns:
        (private key path, public key path).

    Raises:
        ExportError: the folder cannot be written, or a key exists and ``overwrite`` is False.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out}: cannot create key folder ({exc.strerror})") from exc
    private, public = out / PRIVATE_NAME, out / PUBLIC_NAME
    if out.is_symlink():
        raise ExportError(f"{out}: the key folder is a symbolic link; refusing to write a private key through it")
    if not overwrite and (os.path.lexists(private) or os.path.lexists(public)):
        raise ExportError(f"{out}: a key pair (or a link named like one) already exists there; refusing to replace it")
    key = SigningKey.generate()
    try:
        _write_line(private, bytes(key), 0o600, replace=overwrite)
        _write_line(public, bytes(key.verify_key), 0o644, replace=overwrite)
    except OSError as exc:
        raise ExportError(f"{out}: cannot write keys ({exc.strerror})") from exc
    return private, public


def load_private_key(path: str | Path) -> SigningKey:
    """Read ``private.key``; raises ExportError naming the file if it is missing or malformed."""
    return SigningKey(_read_key(path, "private"))


def load_publisher_private_key(path: str | Path, publisher_key: bytes) -> SigningKey:
    """Read ``private.key`` and check it is the private half of ``publisher_key`` (raw 32 bytes).

    Raises:
        ExportError: the file is missing, unreadable or malformed, or holds another key (names it).
    """
    try:
        key = load_private_key(path)
    except OSError as exc:
        raise ExportError(f"{path}: not a usable private key ({exc})") from None
    if bytes(key.verify_key) != bytes(publisher_key):
        raise ExportError(f"{path}: not the private half of this hub's publisher key: devices would refuse "
                          f"what it signs")
    return key


def load_public_key(path: str | Path) -> VerifyKey:
    """Read ``public.key``; raises ExportError naming the file if it is missing or malformed."""
    return VerifyKey(_read_key(path, "public"))


def public_key_b64(private_key_path: str | Path) -> str:
    """The base64 public key matching a private key file (for the manifest's key id)."""
    return base64.b64encode(bytes(load_private_key(private_key_path).verify_key)).decode()


def sign_manifest(manifest_bytes: bytes, private_key_path: str | Path) -> bytes:
    """Sign the exact bytes of ``manifest.json``.

    Args:
        manifest_bytes: the file's bytes, exactly as written.
        private_key_path: a ``private.key`` file.

    Returns:
        The content of ``manifest.sig``: base64 of the 64-byte signature and a newline.

    Raises:
        ExportError: the key file is missing or malformed.
    """
    signature = load_private_key(private_key_path).sign(manifest_bytes).signature
    return base64.b64encode(signature) + b"\n"


def verify_manifest(manifest_bytes: bytes, sig_file_bytes: bytes, public_key_path: str | Path) -> None:
    """Check ``manifest.sig`` against ``manifest.json`` under a public key.

    Raises:
        SignatureError: the signature is malformed or does not verify.
        ExportError: the public key file is missing or malformed.
    """
    key = load_public_key(public_key_path)
    try:
        signature = base64.b64decode(sig_file_bytes.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"manifest.sig is not base64 ({exc})") from exc
    if len(signature) != 64:
        raise SignatureError(f"manifest.sig holds {len(signature)} bytes, an Ed25519 signature has 64")
    try:
        key.verify(manifest_bytes, signature)
    except BadSignatureError as exc:
        raise SignatureError("manifest.sig does not verify: manifest.json was changed or signed "
                             "with another key") from exc


def dev_key_dir() -> Path:
    """Where the development key lives: ``$XDG_CONFIG_HOME/dopamine/dev-signing-key`` (or ~/.config)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dopamine" / "dev-signing-key"


def dev_private_key() -> Path:
    """Return the development private key, making it on first use, with a loud warning on stderr."""
    folder = dev_key_dir()
    private = folder / PRIVATE_NAME
    if not private.is_file():
        generate_keypair(folder)
    bar = "!" * 78
    print(f"{bar}\nWARNING: no --key given: signing with the DEVELOPMENT key {private}\n"
          f"Devices must not trust this key in production. Make a real key with\n"
          f"  python -m export keygen --out KEYDIR   and pass --key KEYDIR/private.key\n{bar}",
          file=sys.stderr)
    return private
