"""The edge client's public API, used by the Kivy app and the CLI (docs/CONTRACTS.md "Edge client API")."""
from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_client.budget import Budget, BudgetStatus
from edge_client.card import ModelCard
from edge_client.diagnosis import Diagnosis, Visit, grade, log_refusal
from edge_client.errors import CorruptModelError, EdgeError, ModelNotInstalled, PhotoQualityError
from edge_client.head_training import head_logits
from edge_client.history import History, HistoryEntry
from edge_client.manifest import read_public_key
from edge_client.ood import check_features, stats_from_manifest
from edge_client.paths import resolve_home
from edge_client.preprocess import ImageError, PreprocessConfig, load_image, preprocess_image
from edge_client.quality import check_quality
from edge_client.runtimes import runtime_for
from edge_client.fileio import atomic_write
from edge_client.store import Installed, ModelStore
from edge_client.sync import SyncResult, sync as _sync
from edge_client.training import (PersonalHead, RoundResult, RoundSettings, load_personal_head, run_round)
from edge_client.labels import LabelledPhoto, read_labels
from edge_client.updates import QueuedUpdate, UpdateQueue, UploadReport

__all__ = ["EdgeClient", "Diagnosis", "InstalledModel", "HistoryEntry", "SyncResult"]

MAX_PHOTO_BYTES = 50 * 1024 * 1024


@dataclass
class InstalledModel:
    version: int
    created: str
    accuracy: float | None
    epsilon: float | None
    delta: float | None
    accountant: str | None
    runtime: str
    artifact: str
    privacy_model: str | None = None
    card: ModelCard | None = None


class EdgeClient:
    """The device's model, diagnoses and history, kept under one state folder.

    Args:
        home: state folder; None: $EDGE_HOME, else the platform's app-data folder.
    """

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = resolve_home(home)
        self.store = ModelStore(self.home)
        self.notice: str | None = None  # set when the client fell back to an older model
        self._runtime = None
        self._runtime_version: int | None = None
        # Two locks, so a model download never blocks grading: `_lock` is held by each grading
        # or training round (the runtime and the active version it reads); `_sync_lock` lets one
        # sync run at a time and is never held by a grading. The new version becomes current with
        # one atomic rename (store.set_current), and the runtime cache is dropped under `_lock`:
        # each grading runs wholly on the version it read, the next one on the new version.
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()

    # -- model --------------------------------------------------------------------------------
    def _active(self) -> Installed:
        """The current model, re-verified; a corrupt one is replaced by the newest good older one."""
        current = self.store.current_version()
        if current is None:
            raise ModelNotInstalled("no model installed yet: connect and run sync")
        try:
            return self.store.load(current)
        except CorruptModelError as exc:
            for version in reversed(self.store.installed_versions()):
                if version >= current:
                    continue
                try:
                    good = self.store.load(version)
                except CorruptModelError:
                    continue
                self.store.set_current(version)
                self.notice = f"{exc}; switched back to model version {version}: sync to repair"
                return good
            raise ModelNotInstalled(f"{exc}; no older good model on this device: connect and run sync") from None

    def installed_model(self) -> InstalledModel | None:
        """The active model's card, or None when nothing usable is installed."""
        try:
            inst = self._active()
        except ModelNotInstalled:
            return None
        m = inst.manifest
        privacy = m.get("privacy") or {}
        accuracy = ((m.get("metrics") or {}).get("test") or {}).get("accuracy")
        try:
            runtime = runtime_for(inst.artifact).name
        except EdgeError:
            runtime = "unavailable"
        return InstalledModel(inst.version, str(m.get("created", "")), accuracy, privacy.get("epsilon"),
                              privacy.get("delta"), privacy.get("accountant"), runtime,
                              inst.artifact["name"], privacy.get("privacy_model"), ModelCard.from_manifest(m))

    def rollback(self) -> int:
        """Make the newest good version below the current one active. Returns it.

        Raises:
            ModelNotInstalled: no older good version on the device.
        """
        current = self.store.current_version()
        for version in reversed(self.store.installed_versions()):
            if current is not None and version >= current:
                continue
            try:
                self.store.load(version)
            except CorruptModelError:
                continue
            self.store.set_current(version)
            self._runtime = None
            return version
        raise ModelNotInstalled(f"no older model on this device to roll back to (current: {current})")

    def sync(self, server_url: str, *, public_key: bytes | str | Path | None = None,
             progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
             ca_file: str | None = None, insecure_http: bool = False) -> SyncResult:
        """Fetch and install the hub's latest model (see ``edge_client.sync.sync``).

        Args:
            server_url: the hub. public_key: raw bytes, base64 text or a public.key path; needed
            on first use, must equal the pinned key after. progress: (done, total) callback.
            cancel: threading.Event that stops the download (resumable). ca_file: private CA.

        Gradings go on while it downloads (it never holds the grading lock); a second sync on
        this client waits for the first.

        Raises:
            SyncError subclasses (NetworkError, TrustError, DowngradeError, IntegrityError,
            DiskFullError, NoCompatibleArtifact); the previous model stays active.
        """
        from edge_client.fetcher import Fetcher

        key = public_key if isinstance(public_key, (bytes, type(None))) else read_public_key(public_key)
        with self._sync_lock:
            result = _sync(self.store, server_url, public_key=key, progress=progress, cancel=cancel,
                           fetcher=Fetcher(server_url, ca_file=ca_file, insecure_http=insecure_http))
            if result.updated:
                with self._lock:      # between two gradings: the next one loads the new version
                    self._runtime = None
                    self._runtime_version = None
                    self.notice = None
        return result

    def _runtime_for(self, inst: Installed):
        if self._runtime is None or self._runtime_version != inst.version:
            self._runtime = runtime_for(inst.artifact)(inst.artifact_path, inst.artifact)
            self._runtime_version = inst.version
        return self._runtime

    # -- diagnosis ----------------------------------------------------------------------------
    def diagnose(self, image: str | Path | bytes, *, keep_photo: bool = False, patient_id: str | None = None,
                 eye: str | None = None, operator: str | None = None) -> Diagnosis:
        """Grade one fundus photo on the device (no network) and decide on referral.

        Args:
            image: a file path or the encoded image bytes. keep_photo: also store the photo.
            patient_id, eye ("left"/"right"), operator: the clinic's fields, kept in the history.

        Returns:
            Diagnosis (decision, calibrated P(referable), reason, model card, ...), also appended to
            the history.

        Raises:
            ModelNotInstalled, ImageError (unreadable photo), ValueError (bad eye, patient id or operator),
            PhotoQualityError (.reason, .hint, .measures, .attempts, .history_id): a refused photo,
            logged in the history; UngradableReferral (a PhotoQualityError) on the Nth refusal in a
            row for one patient's eye: "could not be graded: refer".
        """
        start = time.perf_counter()
        visit = Visit.start(patient_id, eye, operator)
        data, label = self._read(image)
        with self._lock:
            inst = self._active()
            m = inst.manifest
            cfg = PreprocessConfig.from_dict(m["preprocess"])
            card = ModelCard.from_manifest(m)
            img = load_image(data, max_pixels=cfg.max_pixels, name=label)
            try:
                report = check_quality(np.asarray(img), cfg, m.get("quality"))
                logits, features = self._runtime_for(inst).run(preprocess_image(img, cfg)[None])
                check_features(features, stats_from_manifest(m), report.to_dict())
            except PhotoQualityError as exc:
                refused = exc
            else:
                refused = None
        photo = self._keep(data, hashlib.sha256(data).hexdigest()) if keep_photo else None
        history = History(self.home / "history.sqlite")
        try:
            if refused is not None:
                raise log_refusal(refused, manifest=m, card=card, visit=visit, history=history, data=data,
                                  model_version=inst.version, photo_path=photo) from None
            z, personal = logits[0].astype(np.float64), self._personal_for(inst.version)
            if personal is not None:  # this device's own head: base logits + its trained change
                z = head_logits(personal.params, features.astype(np.float64), z[None])[0]
            return grade(z, manifest=m, card=card, visit=visit, history=history, data=data,
                         model_version=inst.version, personal_head=personal is not None, quality=report.to_dict(),
                         seconds=time.perf_counter() - start, photo_path=photo)
        finally:
            history.close()

    @staticmethod
    def _read(image: str | Path | bytes) -> tuple[bytes, str]:
        if isinstance(image, (bytes, bytearray)):
            return bytes(image), "image"
        path = Path(image)
        try:
            if path.stat().st_size > MAX_PHOTO_BYTES:
                raise ImageError(f"{path}: file over {MAX_PHOTO_BYTES // 2**20} MB")
            return path.read_bytes(), str(path)
        except OSError as exc:
            raise ImageError(f"{path}: cannot read ({exc.strerror})") from None

    def _keep(self, data: bytes, digest: str) -> str:
        ext = ".png" if data[:4] == b"\x89PNG" else ".jpg" if data[:2] == b"\xff\xd8" else ".img"
        path = self.home / "photos" / f"{digest}{ext}"
        atomic_write(path, data)
        return str(path)

    # -- history ------------------------------------------------------------------------------
    def history(self) -> list[HistoryEntry]:
        """All stored results, newest first."""
        h = History(self.home / "history.sqlite")
        try:
            return h.entries()
        finally:
            h.close()

    def delete_history(self, entry_id: int) -> None:
        """Delete one result and its kept photo, if any. Raises KeyError for an unknown id."""
        h = History(self.home / "history.sqlite")
        try:
            photo = h.delete(entry_id)
        finally:
            h.close()
        if photo:
            Path(photo).unlink(missing_ok=True)

    def export_history_csv(self, path: str | Path) -> Path:
        """Write the history as CSV (atomic). Returns the path written."""
        h = History(self.home / "history.sqlite")
        try:
            return h.export_csv(Path(path))
        finally:
            h.close()

    # -- on-device training (issue 8) ----------------------------------------------------------
    def _personal_for(self, version: int) -> PersonalHead | None:
        head = load_personal_head(self.home)
        return head if head is not None and head.base_version == version else None

    def personal_head(self) -> PersonalHead | None:
        """The personal head in use for the active model, or None (none, or trained on another version)."""
        current = self.store.current_version()
        return None if current is None else self._personal_for(current)

    def clear_personal_head(self) -> None:
        """Go back to the shared head for diagnoses (the ε it spent stays spent)."""
        (self.home / "personal" / "head.json").unlink(missing_ok=True)

    def list_labelled_photos(self, labels_csv: str | Path) -> list[LabelledPhoto]:
        """The photos a labels CSV names (``image,grade[,patient]``). Raises LabelsError (every bad row)."""
        return read_labels(labels_csv)

    def train_round(self, labels_csv: str | Path, mode: str = "federated", epsilon: float = 5.0, *,
                    settings: RoundSettings | None = None, progress: Callable[[str, int, int], None] | None = None,
                    seed: int | None = None) -> RoundResult:
        """Train the head under DP on labelled photos (see ``edge_client.training.run_round``).

        Args:
            labels_csv: CSV ``image,grade,patient`` of the specialist's grades. mode: "personal"
            (kept, used by diagnose) or "federated" (queued as a pending update for approve_update/upload_updates).
            epsilon: what this round alone may cost each patient. settings: public constants (defaults).
            progress: progress(stage, done, total), stage "features" then "training".
            seed: tests only: no DP guarantee; a federated update from it is queued rejected, never uploaded.

        Raises:
            ModelNotInstalled, LabelsError, ImageError, BudgetExceeded, ValueError.
        """
        photos = read_labels(labels_csv)  # a bad CSV is reported first, model or not
        with self._lock:
            inst = self._active()
            return run_round(self.home, inst, self._runtime_for(inst), photos, mode=mode, epsilon=epsilon,
                             settings=settings or RoundSettings(), seed=seed, progress=progress)

    def budget_status(self, labels_csv: str | Path) -> BudgetStatus:
        """Privacy budget of the patients a labels CSV names (each patient's spend on this device).

        Raises:
            LabelsError: a bad CSV.
        """
        photos = read_labels(labels_csv)
        budget = Budget(self.home)
        try:
            return budget.status(photos)
        finally:
            budget.close()

    def _queue(self) -> contextlib.closing[UpdateQueue]:
        """The update queue, closed when the `with` block ends."""
        return contextlib.closing(UpdateQueue(self.home))

    def pending_updates(self) -> list[QueuedUpdate]:
        """Updates not yet uploaded (pending approval, or approved and waiting), newest first."""
        with self._queue() as q:
            return [u for u in q.list() if u.status in ("pending", "approved")]

    def update_queue(self) -> list[QueuedUpdate]:
        """Every queued update, any status, newest first."""
        with self._queue() as q:
            return q.list()

    def update_payload(self, update_id: int) -> dict:
        """The exact JSON an update uploads (for the user to inspect). Raises KeyError."""
        with self._queue() as q:
            return q.payload(update_id)

    def approve_update(self, update_id: int) -> None:
        """The user's consent to upload one pending update. Raises KeyError, EdgeError."""
        with self._queue() as q:
            q.approve(update_id)

    def discard_update(self, update_id: int) -> None:
        """Drop a queued update (its ε stays spent). Raises KeyError, EdgeError."""
        with self._queue() as q:
            q.discard(update_id)

    def upload_updates(self, server_url: str, token: str, *, ca_file: str | None = None,
                       insecure_http: bool = False) -> UploadReport:
        """Upload every approved update with the device's token; offline ones wait for the next call.
        Plain http:// to another host is refused unless ``insecure_http`` (the token would travel in clear)."""
        with self._queue() as q:
            return q.upload(server_url, token, ca_file=ca_file, insecure_http=insecure_http)

    def model_list_status(self):
        """The signed model list: .state fresh/stale/expired/none, .expires, .message (for banners)."""
        return self.store.index_status()
