"""HTTP conditional and range request logic (RFC 9110), pure functions so tests pin them."""
from __future__ import annotations

__all__ = ["etag_matches", "parse_range"]


def etag_matches(header: str | None, etag: str) -> bool:
    """True when an If-None-Match / If-Range header names ``etag`` (weak prefix ignored) or is ``*``."""
    if not header:
        return False
    for item in header.split(","):
        item = item.strip()
        if item == "*" or item.removeprefix("W/") == etag:
            return True
    return False


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """Parse a single-range ``Range: bytes=...`` header.

    Args:
        header: the Range header or None. size: the representation's length in bytes.

    Returns:
        None to serve the whole file (no header, another unit, or several ranges: allowed by
        RFC 9110 14.2), (first, last) inclusive for a satisfiable range, or the string
        "unsatisfiable" for a 416.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_s == "":  # suffix range: the last N bytes
            n = int(last_s)
            if n <= 0 or size == 0:
                return "unsatisfiable"
            return (max(0, size - n), size - 1)
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size >= 0 and first >= 0:
        return "unsatisfiable"
    if first < 0 or last < first:
        return None
    return (first, min(last, size - 1))
