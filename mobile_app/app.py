"""The Kivy application: screen manager, settings, and the bridge from screens to worker threads.

Screens call the methods in the "for screens" section; each runs `Actions` (the edge client) in
a worker thread and calls back on the UI thread, so the UI keeps drawing while a photo is graded
or a model downloads.
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
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.screenmanager import NoTransition

from . import widgets
from .actions import (Actions, GradeOutcome, LabelsOutcome, SyncOutcome, TrainOutcome, UploadOutcome,
                      server_reachable)
from .i18n import languages, translate
from .pickers import PhotoPicker, default_picker
from .runner import BackgroundRunner
from .screens import NAMES, screen_class
from .settings_store import AUTO_RUNTIME, Settings, SettingsError, SettingsStore

_ROOT_KV = Path(__file__).with_name("root.kv")   # not "dopamine.kv": Kivy would auto-load that too


class DopamineApp(App):
    """Dopamine's screening app. Build it with `run()` (desktop, phone) or `build()` (tests)."""

    title = "Dopamine"
    lang = StringProperty("en")
    server_url = StringProperty("")
    runtime = StringProperty("auto")
    training_enabled = BooleanProperty(False)
    online = BooleanProperty(False)
    model = ObjectProperty(None, allownone=True)     # edge_client InstalledModel or None
    notice = StringProperty("")                       # e.g. "fell back to an older model"
    personal_head = BooleanProperty(False)            # a locally trained head is in use
    current = StringProperty("home")

    def __init__(self, *, home: str | Path | None = None, picker: PhotoPicker | None = None,
                 probe_interval: float = 10.0, client=None, **kwargs):
        """Args:
            home: the edge client's state folder (None: $EDGE_HOME, else the platform's).
            picker: the photo picker (None: the platform's; tests pass a fake).
            probe_interval: seconds between online/offline checks of the server.
            client: an EdgeClient to use instead of building one from `home`.
        """
        super().__init__(**kwargs)
        self.edge_home = Path(home) if home is not None else None
        self.picker = picker
        self.probe_interval = probe_interval
        self.runner = BackgroundRunner()
        self.actions: Actions | None = None
        self._client = client
        self._probing = False
        self.settings_error = ""

    # ---- lifecycle -------------------------------------------------------------------------
    def build(self):
        Window.clearcolor = (0.96, 0.97, 0.98, 1)
        widgets.load()
        if "AppRoot" not in Factory.classes:
            Builder.load_file(str(_ROOT_KV))
        state = self.edge_home if self.edge_home is not None else Path(self.user_data_dir)
        self.store = SettingsStore(state / "app_settings.json")
        try:
            settings = self.store.load()
        except SettingsError as exc:          # a damaged file must not stop the app
            self.settings_error = str(exc)
            settings = Settings()
        self._apply(settings)
        self._make_actions()
        self.picker = self.picker or default_picker()
        self.refresh_model()
        root = Factory.AppRoot()
        root.ids.manager.transition = NoTransition()
        self._root = root
        self._build_nav()
        self.bind(training_enabled=lambda *_a: self._build_nav(), lang=lambda *_a: self._build_nav())
        self.show("home")
        self.probe_online()
        Clock.schedule_interval(lambda _dt: self.probe_online(), self.probe_interval)
        return root

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
        nav = self._root.ids.nav
        nav.clear_widgets()
        for name in NAMES:
            if name == "train" and not self.training_enabled:
                continue
            button = Factory.NavButton(text=self.tr(f"nav.{name}"), screen=name,
                                       state="down" if name == self.current else "normal")
            button.bind(on_release=lambda b: self.show(b.screen))
            nav.add_widget(button)
        if self.current == "train" and not self.training_enabled:
            self.show("home")

    # ---- for screens -----------------------------------------------------------------------
    def tr(self, key: str, *_depends, **values) -> str:
        """Translate `key` into the current language. kv rules pass `app.lang` as an extra
        argument so Kivy re-evaluates them when the language changes."""
        return translate(key, self.lang, **values)

    def show(self, name: str) -> None:
        """Go to a screen, building it on its first visit."""
        manager = self._root.ids.manager
        if not manager.has_screen(name):
            manager.add_widget(screen_class(name)(name=name))
        manager.current = name
        self.current = name
        for button in self._root.ids.nav.children:
            button.state = "down" if button.screen == name else "normal"

    def screen(self, name: str):
        """The screen called `name` (built if needed, without showing it)."""
        manager = self._root.ids.manager
        if not manager.has_screen(name):
            manager.add_widget(screen_class(name)(name=name))
        return manager.get_screen(name)

    def refresh_model(self) -> None:
        """Re-read the installed model's card (a small file read)."""
        self.model = self.actions.installed_model()
        self.notice = self.actions.notice()
        self.personal_head = self.model is not None and self.actions.personal_head_in_use()

    def check_update(self, on_progress: Callable[[int, int], None],
                     on_done: Callable[[SyncOutcome], None]) -> threading.Event:
        """Sync with the server in the background; returns the Event that cancels it."""
        cancel = threading.Event()

        def progress(done: int, total: int) -> None:
            self.runner.post(on_progress, done, total)

        def job() -> tuple[SyncOutcome, object, bool]:
            outcome = self.actions.sync(self.server_url, public_key=self.settings.public_key,
                                        progress=progress, cancel=cancel)
            model = self.actions.installed_model()
            return outcome, model, model is not None and self.actions.personal_head_in_use()

        def done(result) -> None:
            outcome, self.model, self.personal_head = result
            self.notice = self.actions.notice()
            on_done(outcome)

        self.runner.submit(job, on_done=done,
                           on_error=lambda exc: on_done(SyncOutcome("failed", message=str(exc))))
        return cancel

    def grade(self, photo: str | Path, on_done: Callable[[GradeOutcome], None]) -> None:
        """Grade a photo on the device, in the background."""
        self.runner.submit(self.actions.grade, photo, on_done=on_done,
                           on_error=lambda exc: on_done(GradeOutcome("failed", reason=str(exc))))

    def load_history(self, on_done: Callable[[list], None]) -> None:
        """Past results, newest first, read in the background."""
        self.runner.submit(self.actions.history, on_done=on_done, on_error=lambda _e: on_done([]))

    def delete_history(self, entry_id, on_done: Callable[[], None]) -> None:
        """Delete one past result, then call `on_done()`."""
        self.runner.submit(self.actions.delete_history, entry_id, on_done=lambda _r: on_done(),
                           on_error=lambda _e: on_done())

    def export_history(self, on_done: Callable[[str, str], None]) -> None:
        """Export the history as CSV; `on_done(path, error)` with one of them empty."""
        folder = (self.edge_home if self.edge_home is not None else Path(self.user_data_dir)) / "exports"
        self.runner.submit(self.actions.export_history, folder,
                           on_done=lambda path: on_done(str(path), ""),
                           on_error=lambda exc: on_done("", str(exc)))

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
        """Check in the background whether the server answers (the Home badge)."""
        if self._probing:
            return
        if not self.server_url:
            self.online = False
            return
        self._probing = True

        def done(ok) -> None:
            self._probing = False
            self.online = bool(ok)

        self.runner.submit(server_reachable, self.server_url, on_done=done,
                           on_error=lambda _e: done(False))
