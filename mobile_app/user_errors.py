"""What went wrong, in the user's words: edge-client failures mapped to translation keys.

Each key's text (translations/*.json, "error.*") says what happened and what to do next, in the
user's language; the edge client's own one-line message (English, technical) is kept as the
details a supervisor can read, never as the headline. Pure Python: testable without a window.
"""
from __future__ import annotations

from edge_client import errors

# Errors the supply chain (issue 13) adds (ExpiredIndexError, WithdrawnError,
# InsecureTransportError, BusyError), matched by class name so this runs before and after them.
_BY_NAME = (("Expired", "error.index_stale"), ("Stale", "error.index_stale"),
            ("Withdrawn", "error.withdrawn"), ("Insecure", "error.insecure_http"), ("Busy", "error.busy"))


def sync_error_key(exc: BaseException) -> str:
    """The translation key for a failed sync.

    Args:
        exc: what `EdgeClient.sync` raised.

    Returns:
        An "error.*" key; "error.unexpected" for anything not foreseen.
    """
    name = type(exc).__name__
    for part, key in _BY_NAME:
        if part in name:
            return key
    if isinstance(exc, errors.NetworkError):
        return "error.hub_empty" if "no model published" in str(exc) else "error.network"
    if isinstance(exc, errors.TrustError):
        return "error.not_signed"       # wrong key or a tampered manifest: the app checks the
        # "no key" and "other key pinned" cases itself before it syncs (see app.check_update)
    if isinstance(exc, errors.DowngradeError):
        return "error.downgrade"
    if isinstance(exc, errors.IntegrityError):
        return "error.integrity"
    if isinstance(exc, errors.DiskFullError):
        return "error.disk_full"
    if isinstance(exc, errors.NoCompatibleArtifact):
        return "error.no_artifact"
    if isinstance(exc, OSError):
        return "error.storage"
    return "error.unexpected"


SYNC_ERROR_KEYS = ("error.network", "error.hub_empty", "error.not_signed", "error.downgrade", "error.integrity",
                   "error.disk_full", "error.no_artifact", "error.storage", "error.unexpected", "error.index_stale",
                   "error.withdrawn", "error.insecure_http", "error.busy", "error.no_key", "error.key_mismatch",
                   "error.no_server", "error.bad_builtin_key")
