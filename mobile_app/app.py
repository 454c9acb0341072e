"""The Kivy application: screens, navigation, settings, the publisher key, and the bridge from
screens to worker threads.

Screens call the methods in the "for screens" section; each runs `Actions` (the edge client) in
a worker thread and calls back on the UI thread, so the UI keeps drawing while a photo is graded
or a model downloads, and a photo can be graded while a model downloads.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.lang import Builder
from kivy.properties import BooleanProperty, DictProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.screenmanager import NoTransition

from . import provision, widgets
from .actions import (Actions, GradeOutcome, LabelsOutcome, SyncOutcome, TrainOutcome, UploadOutcome,
                      offered_version, server_reachable)
from .i18n import languages, translate
from .navigation import Navigator
from .pickers import PhotoPicker, default_picker
from .runner import BackgroundRunner
from .screens import NAMES, screen_class
from .settings_store import AUTO_RUNTIME, Settings, SettingsError, SettingsStore

_ROOT_KV = Path(__file__).with_name("root.kv")   # not "dopamine.kv": Kivy would auto-load that too


def announce_platform() -> str:
    """Tell the edge client the platform Kivy sees (kivy-ios's Python says "darwin" on an iPhone)."""
    from kivy.utils import platform

    from edge_client.runtimes import set_platform
    set_platform(platform if platform in ("android", "ios", "macosx", "win", "linux") else "unknown")
    return platform


class DopamineApp(App):
    """Dopamine's screening app. Build it with `run()` (desktop, phone) or `build()` (tests)."""

    title = "Dopamine"
    lang = StringProperty("en")
    server_url = StringProperty("")
    runtime = StringProperty("auto")
    training_enabled = BooleanProperty(False)
    online = BooleanProperty(False)
    offered = NumericProperty(-1)                     # version the hub offers, -1 unknown
    index_stale = BooleanProperty(False)              # the signed model list expired (issue 13)
    index_expires = StringProperty("")
    model_withdrawn = BooleanProperty(False)          # the publisher withdrew the installed version
    model = ObjectProperty(None, allownone=True)      # edge_client InstalledModel or None
    manifest = DictProperty({})                       # the active model's signed manifest
    notice = StringProperty("")                       # e.g. "fell back to an older model"
    personal_head = BooleanProperty(False)            # a locally trained head is in use
    key_source = StringProperty("none")               # pinned | entered | bundled | none
    key_fingerprint = StringProperty("")
    current = StringProperty("home")

    def __init__(self, *, home: str | Path | None = None, picker: PhotoPicker | None = None,
                 probe_interval: float = 10.0, client=None, bundled_key: str | Path | None = None, **kwargs):
        """Args:
            home: the edge client's state folder (None: $EDGE_HOME, else the platform's).
            picker: the photo picker (None: the platform's; tests pass their own).
            probe_interval: seconds between online/offline checks of the server.
            client: an EdgeClient to use instead of building one from `home`.
            bundled_key: the built-in publisher key file (None: mobile_app/publisher_key.json).
        """
        super().__init__(**kwargs)
        self.edge_home = Path(home) if home is not None else None
        self.picker = picker
        self.probe_interval = probe_interval
        self.bundled_key_path = Path(bundled_key) if bundled_key is not None else provision.BUNDLED_KEY_FILE
        self.runner = BackgroundRunner()
        self.actions: Actions | None = None
        self._client = client
        self._probing = False
        self.settings_error = ""
        self.bundled_key: bytes | None = None
        self.bundled_key_error = ""

    # ---- lifecycle -------------------------------------------------------------------------
    def build(self):
        announce_platform()
        Window.clearcolor = (0.96, 0.97, 0.98, 1)
        widgets.load()
        if "AppRoot" not in Factory.classes:
            Builder.load_file(str(_ROOT_KV))
        state = self.state_dir()
        self.store = SettingsStore(state / "app_settings.json")
        try:
            settings = self.store.load()
        except SettingsError as exc:          # a damaged file must not stop the app
            self.settings_error = str(exc)
            settings = Settings()
        try:
            self.bundled_key = provision.read_bundled(self.bundled_key_path)
        except provision.PublisherKeyError as exc:
            self.bundled_key_error = str(exc)
        self._apply(settings)
        self._make_actions()
        self.picker = self.picker or default_picker(state / "cache")
        self.picker.clear_cache()             # photos a crash left behind
        self.refresh_model()
        root = Factory.AppRoot()
        root.ids.manager.transition = NoTransition()
        self._root = root
        self.nav = Navigator(root.ids.nav, self._show_screen, self.tr)
        self._build_nav()
        self.bind(training_enabled=lambda *_a: self._build_nav(), lang=lambda *_a: self._build_nav())
        Window.bind(on_keyboard=self.nav.on_key)
        self.show("home")
        self.probe_online()
        Clock.schedule_interval(lambda _dt: self.probe_online(), self.probe_interval)
        return root

    def state_dir(self) -> Path:
        """The folder of the app's own files (settings, exports on a desktop)."""
        return self.edge_home if self.edge_home is not None else Path(self.user_data_dir)

    def _apply(self, settings: Settings) -> None:
        self.settings = settings
        self.lang = settings.language if settings.language in languages() else "en"
        self.server_url = settings.server_url
        self.runtime = settings.runtime
        self.training_enabled = settings.training_enabled

    def _make_actions(self) -> None:
        """(Re)create the edge client; the runtime setting reaches it through EDGE_RUNTIME,
        the edge client's documented switch."""
        from edge_client.api import EdgeClient   # here, so `import mobile_app.app` stays cheap

        if self.runtime == AUTO_RUNTIME:
            os.environ.pop("EDGE_RUNTIME", None)
        else:
            os.environ["EDGE_RUNTIME"] = self.runtime
        self.actions = Actions(self._client or EdgeClient(self.edge_home))

    def _build_nav(self) -> None:
        self.nav.build([n for n in NAMES if n != "train" or self.training_enabled])

    # ---- for screens -----------------------------------------------------------------------
    def tr(self, key: str, *_depends, **values) -> str:
        """Translate `key` into the current language. kv rules pass `app.lang` as an extra
        argument so Kivy re-evaluates them when the language changes."""
        return translate(key, self.lang, **values)

    def show(self, name: str) -> None:
        """Go to a screen (building it on its first visit); back returns to the one left."""
        self.nav.go(name)

    def _show_screen(self, name: str) -> None:
        self.screen(name)
        self._root.ids.manager.current = name
        self.current = name

    def screen(self, name: str):
        """The screen called `name` (built if needed, without showing it)."""
        manager = self._root.ids.manager
        if not manager.has_screen(name):
            manager.add_widget(screen_class(name)(name=name))
        return manager.get_screen(name)

    def confirm(self, *, title: str, message: str, confirm: str, on_confirm: Callable[[], None]):
        """Ask before a destructive action; `on_confirm()` runs only after the red button."""
        popup = Factory.ConfirmPopup(title=title, message=message, confirm_text=confirm,
                                     cancel_text=self.tr("common.cancel"), action=on_confirm)
        popup.open()
        return popup

    def refresh_model(self) -> None:
        """Re-read the installed model's card, its manifest and the trusted key (small file reads)."""
        self.model = self.actions.installed_model()
        self.manifest = self.actions.manifest()
        self.notice = self.actions.notice()
        self.personal_head = self.model is not None and self.actions.personal_head_in_use()
        index = self.actions.index_state()
        self.index_stale, self.index_expires, self.model_withdrawn = index.stale, index.expires, index.withdrawn
        self.refresh_key()

    # ---- the publisher key -----------------------------------------------------------------
    def key_choice(self) -> provision.KeyChoice:
        """The key the next sync trusts (pinned, else entered here, else built in)."""
        try:
            return provision.choose_key(pinned=self.actions.pinned_key(), entered=self.settings.public_key,
                                        bundled=self.bundled_key)
        except provision.PublisherKeyError:
            return provision.KeyChoice(self.bundled_key, "bundled" if self.bundled_key else "none")

    def refresh_key(self) -> None:
        choice = self.key_choice()
        self.key_source, self.key_fingerprint = choice.source, choice.fingerprint

    def use_key(self, text: str) -> str:
        """Trust a pasted or scanned key for the first sync. Returns "" or the translation key of
        why not (not a key; or this device already trusts another key since its first sync)."""
        try:
            raw = provision.parse_key(text)
        except provision.PublisherKeyError:
            return "key.not_a_key"
        pinned = self.actions.pinned_key()
        if pinned is not None and pinned != raw:
            return "key.pinned_other"
        error = self.save_settings(public_key=provision.encode_key(raw))
        self.refresh_key()
        return "key.save_failed" if error else ""

    def read_key_photo(self, photo: str | Path, on_done: Callable[[str, str], None]) -> None:
        """Decode a photographed QR code in the background; `on_done(key_text, error_key)`."""
        from . import qr

        def job():
            try:
                text = qr.decode_qr(photo)
            except qr.QRUnavailable:
                return "", "key.no_decoder"
            except (qr.QRNotFound, OSError):
                return "", "key.no_qr"
            finally:
                self.picker.release(photo)
            try:
                provision.parse_key(text)
            except provision.PublisherKeyError:
                return "", "key.qr_not_a_key"
            return text, ""

        self.runner.submit(job, on_done=lambda r: on_done(*r), on_error=lambda _e: on_done("", "key.no_qr"))

    # ---- background jobs -------------------------------------------------------------------
    def check_update(self, on_progress: Callable[[int, int], None],
                     on_done: Callable[[SyncOutcome], None]) -> threading.Event | None:
        """Sync with the server in the background; returns the Event that cancels it (None when
        the sync could not start: `on_done` has then been called with the reason)."""
        choice = self.key_choice()
        if not self.server_url:
            Clock.schedule_once(lambda _dt: on_done(SyncOutcome("failed", error_key="error.no_server")), 0)
            return None
        if choice.raw is None:
            key = "error.bad_builtin_key" if self.bundled_key_error else "error.no_key"
            Clock.schedule_once(lambda _dt: on_done(SyncOutcome("failed", error_key=key)), 0)
            return None
        cancel = threading.Event()

        def progress(done: int, total: int) -> None:
            self.runner.post(on_progress, done, total)

        def job() -> SyncOutcome:
            return self.actions.sync(self.server_url, public_key=None if choice.source == "pinned" else choice.raw,
                                     progress=progress, cancel=cancel)

        def done(outcome: SyncOutcome) -> None:
            self.refresh_model()
            if outcome.index_expires:
                self.index_expires = outcome.index_expires
            if outcome.notice:
                self.notice = outcome.notice
            if outcome.status in ("updated", "current"):
                self.offered = outcome.version if outcome.version is not None else -1
            on_done(outcome)

        self.runner.submit(job, on_done=done,
                           on_error=lambda exc: done(SyncOutcome("failed", message=str(exc), error_key="error.unexpected")))
        return cancel

    def grade(self, photo: str | Path, on_done: Callable[[GradeOutcome], None], *, patient_id: str = "",
              eye: str = "", operator: str = "") -> None:
        """Grade a photo on the device, in the background; its cached copy is deleted afterwards."""
        def done(outcome: GradeOutcome) -> None:
            self.picker.release(photo)
            on_done(outcome)

        self.runner.submit(self.actions.grade, photo, patient_id=patient_id, eye=eye, operator=operator,
                           on_done=done, on_error=lambda exc: done(GradeOutcome("failed", reason=str(exc))))

    def load_history(self, on_done: Callable[[list], None]) -> None:
        """Past results, newest first, read in the background."""
        self.runner.submit(self.actions.history, on_done=on_done, on_error=lambda _e: on_done([]))

    def delete_history(self, entry_id, on_done: Callable[[], None]) -> None:
        """Delete one past result, then call `on_done()`."""
        self.runner.submit(self.actions.delete_history, entry_id, on_done=lambda _r: on_done(),
                           on_error=lambda _e: on_done())

    def export_history(self, on_done: Callable[[str, bool, str], None]) -> None:
        """Export the history as CSV and offer it through the share sheet;
        `on_done(path, shared, error)`."""
        folder = self.picker.export_dir(self.state_dir() / "exports")

        def written(path) -> None:
            self.picker.share_file(path, "text/csv", lambda r: on_done(str(path), r.shared, r.error))

        self.runner.submit(self.actions.export_history, folder, on_done=written,
                           on_error=lambda exc: on_done("", False, str(exc)))

    # ---- training (clinic tablets) ---------------------------------------------------------
    def load_labels(self, labels_csv: str | Path, on_done: Callable[[LabelsOutcome], None]) -> None:
        """Check a labels CSV and read its privacy budget, in the background."""
        self.runner.submit(self.actions.labels, labels_csv, on_done=on_done,
                           on_error=lambda exc: on_done(LabelsOutcome("bad", problems=(str(exc),))))

    def train_round(self, labels_csv: str | Path, mode: str, epsilon: float,
                    on_progress: Callable[[str, int, int], None],
                    on_done: Callable[[TrainOutcome], None]) -> None:
        """Run one DP training round in the background; progress and the outcome come on the UI thread."""
        def progress(stage: str, done: int, total: int) -> None:
            self.runner.post(on_progress, stage, done, total)

        def done(outcome: TrainOutcome) -> None:
            self.personal_head = self.model is not None and self.actions.personal_head_in_use()
            on_done(outcome)

        self.runner.submit(self.actions.train, labels_csv, mode, epsilon, progress, on_done=done,
                           on_error=lambda exc: done(TrainOutcome("failed", reason=str(exc))))

    def load_updates(self, on_done: Callable[[list], None]) -> None:
        """The update queue (newest first), read in the background."""
        self.runner.submit(self.actions.update_queue, on_done=on_done, on_error=lambda _e: on_done([]))

    def change_update(self, update_id: int, approve: bool, on_done: Callable[[str], None]) -> None:
        """Approve or discard one queued update; `on_done(error)` ("" when it worked)."""
        fn = self.actions.approve_update if approve else self.actions.discard_update
        self.runner.submit(fn, update_id, on_done=lambda _r: on_done(""),
                           on_error=lambda exc: on_done(str(exc).strip("'\"")))

    def upload_updates(self, on_done: Callable[[UploadOutcome], None]) -> None:
        """Upload approved updates to the Settings hub with the Settings device token."""
        self.runner.submit(self.actions.upload, self.server_url, self.settings.device_token, on_done=on_done,
                           on_error=lambda exc: on_done(UploadOutcome("partial", messages=(str(exc),))))

    def stop_personal_head(self) -> None:
        """Diagnose with the shared head again (a small file removal, done at once)."""
        self.actions.clear_personal_head()
        self.personal_head = False

    def save_settings(self, **changes) -> str:
        """Validate and store changed settings; returns "" or the error to show."""
        try:
            settings = self.store.save(replace(self.settings, **changes))
        except SettingsError as exc:
            return str(exc)
        old_runtime = self.runtime
        self._apply(settings)
        if self.runtime != old_runtime:
            self._make_actions()
            self.refresh_model()
        self.probe_online()
        return ""

    def probe_online(self) -> None:
        """Check in the background whether the server answers and which version it offers (Home)."""
        if self._probing:
            return
        if not self.server_url:
            self.online, self.offered = False, -1
            return
        self._probing = True
        url = self.server_url

        def job() -> tuple[bool, int]:
            if not server_reachable(url):
                return False, -1
            offered = offered_version(url)
            return True, -1 if offered is None else offered

        def done(result) -> None:
            self._probing = False
            self.online, self.offered = result

        self.runner.submit(job, on_done=done, on_error=lambda _e: done((False, -1)))
