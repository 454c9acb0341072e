"""Errors the edge client raises; each message is one line a clinic user can act on."""
from __future__ import annotations

__all__ = ["EdgeError", "SyncError", "NetworkError", "TrustError", "DowngradeError",
           "IntegrityError", "DiskFullError", "NoCompatibleArtifact", "ModelNotInstalled",
           "CorruptModelError", "PhotoQualityError", "UngradableReferral", "RuntimeUnavailable",
           "ExpiredIndexError", "WithdrawnError", "InsecureTransportError", "BusyError"]


class EdgeError(Exception):
    """Base class: a refused operation with a user-facing message."""


class SyncError(EdgeError):
    """Sync did not install anything; the installed model is unchanged."""


class NetworkError(SyncError):
    """No connection, a dead hub, or a download cut short (partial kept for resume)."""


class TrustError(SyncError):
    """A manifest that does not verify under the pinned key, or a different key offered."""


class DowngradeError(SyncError):
    """The hub offers a lower model version than the installed one."""


class ExpiredIndexError(SyncError):
    """The hub's signed model list is past its expiry (a frozen or replayed list): nothing installed."""


class WithdrawnError(SyncError):
    """The version offered is withdrawn, below the minimum allowed, or not in the signed model list."""


class InsecureTransportError(SyncError):
    """Plain http:// to a host other than this device (loopback) without an explicit opt-in."""


class BusyError(EdgeError):
    """Another process (the app or the CLI) holds this state folder's lock; try again shortly."""


class IntegrityError(SyncError):
    """A downloaded artifact whose size or sha256 does not match the signed manifest."""


class DiskFullError(SyncError):
    """The device ran out of space (or hit a file-size limit) while downloading or installing."""


class NoCompatibleArtifact(SyncError):
    """The manifest has no artifact for any runtime available on this device."""


class ModelNotInstalled(EdgeError):
    """No (usable) model is installed yet: run sync."""


class CorruptModelError(EdgeError):
    """An installed model whose files no longer match its signed manifest."""


class RuntimeUnavailable(EdgeError):
    """The runtime for an artifact cannot be imported or cannot load the model."""


class PhotoQualityError(EdgeError):
    """An unusable photo. ``reason`` is machine-readable, ``hint`` tells the user what to do."""

    def __init__(self, reason: str, hint: str, measures: dict | None = None) -> None:
        super().__init__(hint)
        self.reason = reason
        self.hint = hint
        self.measures = measures or {}
        self.attempts: int | None = None  # refused attempts so far for this patient's eye (None: no patient id)
        self.history_id: int | None = None  # the history row that logged this refusal


class UngradableReferral(PhotoQualityError):
    """The Nth refused photo of one patient's eye (N: the manifest's referral.ungradable_attempts).

    The outcome is a referral: "could not be graded: refer". ``reason`` is "ungradable",
    ``last_reason`` the last photo's own refusal reason, ``attempts`` the count (>= N).
    """

    def __init__(self, attempts: int, last: PhotoQualityError) -> None:
        super().__init__("ungradable", f"could not be graded after {attempts} attempts: refer to an eye "
                                       f"specialist (last photo refused: {last.reason.replace('_', ' ')})",
                         last.measures)
        self.attempts = attempts
        self.last_reason = last.reason
