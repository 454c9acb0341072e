"""What Home must say about the model and the connection: banners that tell the truth.

No "diagnosis still works" without a model; "update available" only when the hub offers a
higher version than the installed one; "model list is stale" when the signed model list the
device last read has expired (issue 13's index). Pure Python: testable without a window.
"""
from __future__ import annotations

from dataclasses import dataclass, field

LEVELS = ("ok", "info", "warn", "error")


@dataclass(frozen=True)
class Banner:
    """One line on Home: a translation key, its values and a colour level (one of LEVELS)."""

    key: str
    level: str
    values: dict = field(default_factory=dict)


def home_banners(*, installed: int | None, server_set: bool, online: bool, offered: int | None,
                 index_stale: bool, index_expires: str = "", withdrawn: bool = False) -> list[Banner]:
    """The banners Home shows, most important first.

    Args:
        installed: the active model version, None when no model is installed.
        server_set: a hub address is saved. online: the hub answered the last probe.
        offered: the version the hub offers (None: unknown). index_stale: the device's signed
            model list is stale or expired. index_expires: when it expires (shown if given).
        withdrawn: the signed list says the publisher withdrew the installed version.

    Returns:
        One to three Banners.
    """
    banners: list[Banner] = []
    if installed is not None and withdrawn:
        banners.append(Banner("banner.withdrawn", "error", {"version": installed}))
    if installed is None:
        if not server_set:
            banners.append(Banner("banner.no_model_no_server", "error"))
        elif not online:
            banners.append(Banner("banner.no_model_offline", "error"))
        else:
            banners.append(Banner("banner.no_model_online", "warn"))
    elif not online:
        banners.append(Banner("banner.offline_with_model", "ok", {"version": installed}))
    elif offered is not None and offered > installed:
        banners.append(Banner("banner.update_available", "info", {"version": offered, "installed": installed}))
    else:
        banners.append(Banner("banner.online_current", "ok", {"version": installed}))
    if index_stale:
        banners.append(Banner("banner.index_stale", "warn", {"expires": index_expires or "?"}))
    return banners
