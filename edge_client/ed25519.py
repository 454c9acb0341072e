"""Ed25519 signature verification (RFC 8032), pure Python, with PyNaCl as a fast path.

Why pure Python: the verifier must run inside python-for-android and kivy-ios builds, which
only ship what has a recipe. A ~100-line verifier over Python integers needs no recipe, no
compiler and no native library, and a manifest is verified once per sync, so a few
milliseconds do not matter. When PyNaCl (libsodium) is importable, it is used instead.

The check is RFC 8032 section 5.1.7 (cofactorless, as libsodium) with libsodium's extra
refusals: non-canonical point encodings, s >= L, and small-order public keys or R.
"""
from __future__ import annotations

import hashlib

__all__ = ["verify", "KEY_BYTES", "SIG_BYTES"]

KEY_BYTES = 32
SIG_BYTES = 64

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a, b):
    """Point addition in extended coordinates (X, Y, Z, T), RFC 8032 5.1.4."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    pa = (y1 - x1) * (y2 - x2) % _P
    pb = (y1 + x1) * (y2 + x2) % _P
    pc = t1 * 2 * _D * t2 % _P
    pd = z1 * 2 * z2 % _P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(k: int, point):
    """Scalar multiplication by double-and-add (verification: no secret, timing is public)."""
    result = (0, 1, 1, 0)
    while k > 0:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _equal(a, b) -> bool:
    x1, y1, z1, _ = a
    x2, y2, z2, _ = b
    return (x1 * z2 - x2 * z1) % _P == 0 and (y1 * z2 - y2 * z1) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(data: bytes):
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_G = (_recover_x(_GY, 0), _GY, 1, _recover_x(_GY, 0) * _GY % _P)
_IDENTITY = (0, 1, 1, 0)


def _small_order(point) -> bool:
    return _equal(_mul(8, point), _IDENTITY)


def verify_pure(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 Ed25519 verification in pure Python. Returns True only for a valid signature."""
    if len(public_key) != KEY_BYTES or len(signature) != SIG_BYTES:
        return False
    a = _decompress(public_key)
    r = _decompress(signature[:32])
    if a is None or r is None or _small_order(a) or _small_order(r):
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % _L
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


def verify_nacl(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """The same check through PyNaCl/libsodium. Raises ImportError when PyNaCl is missing."""
    from nacl.exceptions import BadSignatureError, CryptoError
    from nacl.signing import VerifyKey

    if len(public_key) != KEY_BYTES or len(signature) != SIG_BYTES:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
        return True
    except (BadSignatureError, CryptoError, ValueError):
        return False


def verify(public_key: bytes, message: bytes, signature: bytes, *, backend: str = "auto") -> bool:
    """Verify an Ed25519 signature.

    Args:
        public_key: raw 32-byte key.
        message: the exact signed bytes.
        signature: raw 64-byte signature.
        backend: "auto" (PyNaCl when importable, else pure Python), "nacl" or "pure".

    Returns:
        True when the signature is valid for this key and message, else False.

    Raises:
        ValueError: unknown backend. ImportError: backend="nacl" without PyNaCl.
    """
    if backend == "pure":
        return verify_pure(public_key, message, signature)
    if backend == "nacl":
        return verify_nacl(public_key, message, signature)
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'nacl' or 'pure', got {backend!r}")
    try:
        return verify_nacl(public_key, message, signature)
    except ImportError:
        return verify_pure(public_key, message, signature)
