"""What the screens ask for, done with `edge_client.api.EdgeClient`, as plain outcomes.

This is the only module of the app that talks to the edge client (and so to the model, the
disk and the network). It has no Kivy in it: every method is a blocking call meant for a worker
thread (see `runner.py`), and every failure a user can meet comes back as an outcome with a
reason instead of an exception, so screens only choose words and colours.
"""
from __future__ import annotations

import inspect
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edge_client.api import EdgeClient
from edge_client.budget import BudgetExceeded
from edge_client.errors import EdgeError, ModelNotInstalled, PhotoQualityError
from edge_client.labels import LabelsError
from edge_client.preprocess import ImageError
from edge_client.runtimes import available_runtimes
from edge_client.training import RoundSettings

from .user_errors import sync_error_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GradeOutcome:
    """status: "ok" (diagnosis set), "unusable" (quality gate: reason + hint), "unreadable"
    (not an image), "no_model", or "failed" (anything else, reason says what).

    refer: for "unusable", the client advises referral because this eye could not be graded
    after repeated attempts (issue 14's "could not be graded: refer")."""

    status: str
    diagnosis: Any = None
    reason: str = ""       # for "unusable": the quality gate's code (too_dark, blurry, ...)
    hint: str = ""
    refer: bool = False


@dataclass(frozen=True)
class SyncOutcome:
    """status: "updated", "current" (nothing newer), "cancelled" or "failed".

    error_key: for "failed", the "error.*" translation key saying what happened and what to do;
    message: the edge client's own line (technical details); index_expires: when the signed
    model list read by this sync expires ("" when the hub has none)."""

    status: str
    version: int | None = None
    message: str = ""
    error_key: str = ""
    index_expires: str = ""
    notice: str = ""              # the client's remark (e.g. the active version was withdrawn)


@dataclass(frozen=True)
class IndexState:
    """The signed model list as Home shows it: stale (expired or over half its life), when it
    expires (UTC), and whether the installed version was withdrawn or fell below the minimum."""

    stale: bool = False
    expires: str = ""
    withdrawn: bool = False


@dataclass(frozen=True)
class LabelsOutcome:
    """A labels CSV as the Train screen shows it. status: "ok" or "bad" (problems: every bad row).

    histogram: photos per grade 0-4. spent/budget/delta: the photo set's privacy budget
    (spent 0 and the default budget before its first round); rounds: rounds charged to it.
    """

    status: str
    photos: int = 0
    patients: int = 0
    histogram: tuple[int, ...] = (0, 0, 0, 0, 0)
    problems: tuple[str, ...] = ()
    spent: float = 0.0
    budget: float = 0.0
    delta: float = 0.0
    rounds: int = 0


@dataclass(frozen=True)
class TrainOutcome:
    """status: "ok" (result: edge_client RoundResult), "bad_labels" (problems), "no_model",
    "budget" (over the set's budget: nothing trained), "unreadable" or "failed" (reason)."""

    status: str
    result: Any = None
    problems: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class UploadOutcome:
    """status: "uploaded" (all sent), "nothing" (nothing approved), "offline" (all still waiting),
    "token" (the hub refused the token; they wait), "partial" (some rejected or waiting),
    "no_server" / "no_token" (a setting is missing). ids per fate; messages: the client's lines."""

    status: str
    uploaded: tuple[int, ...] = ()
    rejected: tuple[int, ...] = ()
    waiting: tuple[int, ...] = ()
    messages: tuple[str, ...] = ()


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Actions:
    """Blocking wrappers around one EdgeClient, called from worker threads.

    Grading and training share the loaded model and take turns; a sync runs beside them (the
    edge client downloads without holding its grading lock and swaps the new model in between
    two gradings), so a health worker keeps grading while an update downloads."""

    def __init__(self, client: EdgeClient):
        self.client = client
        self._model_lock = threading.Lock()    # one grading or training round at a time
        self._sync_lock = threading.Lock()     # one sync at a time

    def installed_model(self):
        """The installed model's card, or None."""
        return self.client.installed_model()

    def manifest(self) -> dict:
        """The active model's signed manifest ({} when none): its privacy block and date."""
        store = self.client.store
        version = store.current_version()
        if version is None:
            return {}
        try:
            return store.load(version, check_hash=False).manifest
        except EdgeError:
            return {}

    def pinned_key(self) -> bytes | None:
        """The publisher key this device trusts since its first verified sync, or None."""
        return self.client.store.pinned_key()

    def index_state(self) -> IndexState:
        """How current the device's signed model list is (issue 13's `ModelStore.index_status`);
        an unknown state (nothing stale) on a store without one."""
        status = getattr(self.client.store, "index_status", None)
        if status is None:
            return IndexState()
        try:
            state = status()
        except (EdgeError, OSError, ValueError):
            return IndexState()
        return IndexState(stale=getattr(state, "state", "none") in ("stale", "expired"),
                          expires=str(getattr(state, "expires", "") or ""),
                          withdrawn=bool(getattr(state, "current_withdrawn", False)
                                         or getattr(state, "current_below_minimum", False)))

    def personal_head_in_use(self) -> bool:
        """Whether a head trained on this device replaces the published one when grading."""
        return self.client.personal_head() is not None

    def notice(self) -> str:
        """What the client wants the user to know (e.g. it fell back to an older model), or ""."""
        return self.client.notice or ""

    def grade(self, photo: str | Path, *, patient_id: str = "", eye: str = "", operator: str = "") -> GradeOutcome:
        """Grade one photo on the device; patient id, eye and operator go with the result when the
        client records them (issue 14)."""
        extra = {k: v for k, v in (("patient_id", patient_id), ("eye", eye), ("operator", operator)) if v}
        accepted = inspect.signature(self.client.diagnose).parameters
        extra = {k: v for k, v in extra.items() if k in accepted}
        with self._model_lock:
            try:
                return GradeOutcome("ok", diagnosis=self.client.diagnose(str(photo), **extra))
            except PhotoQualityError as exc:
                # issue 14: after N refusals in a row for one eye the client says "could not be
                # graded: refer" (UngradableReferral, reason "ungradable", the photo's own in last_reason)
                refer = exc.reason == "ungradable"
                reason = getattr(exc, "last_reason", None) or exc.reason if refer else exc.reason
                return GradeOutcome("unusable", reason=reason, hint=exc.hint, refer=refer)
            except ModelNotInstalled as exc:
                return GradeOutcome("no_model", reason=_reason(exc))
            except ImageError as exc:
                return GradeOutcome("unreadable", reason=_reason(exc))
            except (EdgeError, OSError, ValueError, RuntimeError) as exc:
                return GradeOutcome("failed", reason=_reason(exc))

    def sync(self, server_url: str, *, public_key: bytes | None = None,
             progress: Callable[[int, int], None] | None = None,
             cancel: threading.Event | None = None) -> SyncOutcome:
        """Check the server for a newer model and install it (verified by the edge client).

        Args:
            public_key: the raw key to trust on first use (None once a key is pinned).
        """
        if not server_url:
            return SyncOutcome("failed", error_key="error.no_server")
        with self._sync_lock:
            try:
                result = self.client.sync(server_url, public_key=public_key, progress=progress, cancel=cancel)
            except Exception as exc:  # network, signature, disk: all shown to the user, in words
                if cancel is not None and cancel.is_set():
                    return SyncOutcome("cancelled", message=_reason(exc))
                log.warning("sync failed: %s", exc)
                return SyncOutcome("failed", message=_reason(exc), error_key=sync_error_key(exc))
        expires = str(getattr(result, "index_expires", "") or "")
        notice = str(getattr(result, "notice", "") or "")
        if result.cancelled:
            return SyncOutcome("cancelled", version=result.version, message=result.message, index_expires=expires,
                               notice=notice)
        return SyncOutcome("updated" if result.updated else "current", version=result.version,
                           message=result.message, index_expires=expires, notice=notice)

    def history(self) -> list:
        """Past results, newest first."""
        return self.client.history()

    def delete_history(self, entry_id) -> None:
        """Forget one past result."""
        self.client.delete_history(entry_id)

    def export_history(self, folder: str | Path) -> Path:
        """Write the history as CSV into `folder` (a new, timestamped file) and return its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return Path(self.client.export_history_csv(folder / f"history-{time.strftime('%Y%m%d-%H%M%S')}.csv"))

    # ---- on-device training (issue 8) ---------------------------------------------------------
    def labels(self, labels_csv: str | Path) -> LabelsOutcome:
        """Check a labels CSV and read its photo set's budget (nothing is trained)."""
        try:
            photos = self.client.list_labelled_photos(labels_csv)
        except LabelsError as exc:
            return LabelsOutcome("bad", problems=tuple(exc.problems))
        histogram = [0] * 5
        for p in photos:
            histogram[p.grade] += 1
        defaults = RoundSettings()
        spent, budget, delta, rounds = 0.0, defaults.budget, defaults.delta, 0
        try:
            status = self.client.budget_status(labels_csv)
            spent, budget, delta, rounds = status.spent, status.budget, status.delta, status.rounds
        except KeyError:   # never trained: the defaults apply at its first round
            pass
        return LabelsOutcome("ok", photos=len(photos), patients=len({p.patient for p in photos}),
                             histogram=tuple(histogram), spent=spent, budget=budget, delta=delta, rounds=rounds)

    def train(self, labels_csv: str | Path, mode: str, epsilon: float,
              progress: Callable[[str, int, int], None] | None = None) -> TrainOutcome:
        """Run one DP training round on the device (personal or federated)."""
        with self._model_lock:
            try:
                return TrainOutcome("ok", result=self.client.train_round(labels_csv, mode, epsilon,
                                                                         progress=progress))
            except LabelsError as exc:
                return TrainOutcome("bad_labels", problems=tuple(exc.problems))
            except ModelNotInstalled as exc:
                return TrainOutcome("no_model", reason=_reason(exc))
            except BudgetExceeded as exc:
                return TrainOutcome("budget", reason=_reason(exc))
            except ImageError as exc:
                return TrainOutcome("unreadable", reason=_reason(exc))
            except (EdgeError, OSError, ValueError, RuntimeError) as exc:
                return TrainOutcome("failed", reason=_reason(exc))

    def update_queue(self) -> list:
        """Every queued update (edge_client QueuedUpdate), newest first."""
        return self.client.update_queue()

    def approve_update(self, update_id: int) -> None:
        """The user's consent to upload one pending update."""
        self.client.approve_update(update_id)

    def discard_update(self, update_id: int) -> None:
        """Drop a queued update (its ε stays spent)."""
        self.client.discard_update(update_id)

    def upload(self, server_url: str, token: str) -> UploadOutcome:
        """Upload every approved update with the device's token; offline ones stay approved."""
        if not server_url:
            return UploadOutcome("no_server")
        if not token:
            return UploadOutcome("no_token")
        report = self.client.upload_updates(server_url, token)
        up, rej, wait = tuple(report.uploaded), tuple(report.rejected), tuple(report.waiting)
        msgs = tuple(report.messages)
        if not (up or rej or wait):
            status = "nothing"
        elif up and not (rej or wait):
            status = "uploaded"
        elif wait and not (up or rej):
            refused = any(" 401:" in m or " 403:" in m for m in msgs)
            status = "token" if refused else "offline"
        else:
            status = "partial"
        return UploadOutcome(status, uploaded=up, rejected=rej, waiting=wait, messages=msgs)

    def clear_personal_head(self) -> None:
        """Diagnose with the shared head again."""
        self.client.clear_personal_head()


def offered_version(server_url: str, timeout: float = 3.0) -> int | None:
    """The model version the hub offers (its manifest's X-Model-Version header), None if unknown.

    Only for the "update available" banner: nothing is trusted from it (a sync verifies the
    signed manifest). The body is not read; no device data is sent.
    """
    import requests

    try:
        with requests.get(server_url.rstrip("/") + "/v1/manifest", timeout=timeout, stream=True) as r:
            value = r.headers.get("X-Model-Version", "") if r.status_code == 200 else ""
    except requests.RequestException:
        return None
    return int(value) if value.isdigit() else None


def server_reachable(server_url: str, timeout: float = 1.5) -> bool:
    """Whether a TCP connection to the server's host and port opens (the online/offline badge).

    Only a connection is opened, nothing is sent: the badge must not leak anything.
    """
    parsed = urlparse(server_url)
    if not parsed.hostname:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def runtime_names() -> list[str]:
    """Names of the model runtimes usable on this device, best first."""
    return [r.name for r in available_runtimes()]
