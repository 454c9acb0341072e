"""Settings: server address, runtime, language, local training and the device's upload token;
and the publisher key this device trusts (its fingerprint, where it came from, paste or scan
another before the first sync)."""
from __future__ import annotations

from kivy.app import App
from kivy.properties import ListProperty, StringProperty
from kivy.uix.screenmanager import Screen

from .. import provision
from ..actions import runtime_names
from ..i18n import LANGUAGE_NAMES, languages
from ..settings_store import AUTO_RUNTIME
from . import load_kv

load_kv(__file__)


class SettingsScreen(Screen):
    """Edits a copy of the settings; "Save" validates and stores them through the app."""

    status = StringProperty("")
    key_status = StringProperty("")
    key_status_level = StringProperty("info")
    language_names = ListProperty([])
    runtimes = ListProperty([AUTO_RUNTIME])

    def on_kv_post(self, _base):
        self.language_names = [LANGUAGE_NAMES.get(c, c) for c in languages()]
        self.runtimes = [AUTO_RUNTIME, *runtime_names()]
        self.popup = None

    def on_pre_enter(self, *_args):
        app = App.get_running_app()
        s = app.settings
        self.ids.server.text = s.server_url
        self.ids.runtime.text = s.runtime
        self.ids.language.text = LANGUAGE_NAMES.get(s.language, s.language)
        self.ids.training.active = s.training_enabled
        self.ids.token.text = s.device_token      # a password field: shown as dots
        self.status, self.key_status = app.settings_error, ""
        app.refresh_key()
        if app.bundled_key_error:
            self.key_status, self.key_status_level = app.tr("error.bad_builtin_key"), "error"

    def save(self) -> None:
        """Validate and store; say what went wrong, in words, if anything."""
        app = App.get_running_app()
        by_name = {LANGUAGE_NAMES.get(c, c): c for c in languages()}
        error = app.save_settings(server_url=self.ids.server.text, runtime=self.ids.runtime.text,
                                  language=by_name.get(self.ids.language.text, "en"),
                                  training_enabled=bool(self.ids.training.active),
                                  device_token=self.ids.token.text)
        if error:
            self.status = (app.tr("settings.bad_url") if "server address" in error else
                           app.tr("settings.bad_token") if "device token" in error else error)
        else:
            self.ids.server.text = app.settings.server_url
            self.status = app.tr("settings.saved")

    # ---- the publisher key -------------------------------------------------------------------
    def paste_key(self) -> None:
        """Check the pasted text, then ask before trusting it."""
        self._offer(self.ids.key_input.text)

    def scan_key(self) -> None:
        """Photograph the key's QR code (or choose a photo of it) and read it."""
        app = App.get_running_app()
        self.key_status, self.key_status_level = app.tr("key.scanning"), "info"
        picker = app.picker
        (picker.take_photo if picker.has_camera else picker.pick_photo)(self._on_key_photo)

    def _on_key_photo(self, result) -> None:
        app = App.get_running_app()
        if result.path is None:
            self.key_status = app.tr("key.scan_cancelled") if not result.error else \
                app.tr("diagnose.error", reason=result.error)
            return
        app.read_key_photo(result.path, self._on_key_read)

    def _on_key_read(self, text: str, error_key: str) -> None:
        app = App.get_running_app()
        if error_key:
            self.key_status, self.key_status_level = app.tr(error_key), "error"
            return
        self._offer(text)

    def _offer(self, text: str) -> None:
        app = App.get_running_app()
        try:
            raw = provision.parse_key(text)
        except provision.PublisherKeyError:
            self.key_status, self.key_status_level = app.tr("key.not_a_key"), "error"
            return
        pinned = app.actions.pinned_key()
        if pinned is not None and pinned != raw:
            self.key_status, self.key_status_level = app.tr("key.pinned_other", fingerprint=app.key_fingerprint), "error"
            return
        self.popup = app.confirm(title=app.tr("key.confirm_title"),
                                 message=app.tr("key.confirm_message", fingerprint=provision.fingerprint(raw)),
                                 confirm=app.tr("key.confirm"), on_confirm=lambda: self._use(text))

    def _use(self, text: str) -> None:
        app = App.get_running_app()
        error = app.use_key(text)
        if error:
            self.key_status, self.key_status_level = app.tr(error, fingerprint=app.key_fingerprint), "error"
        else:
            self.ids.key_input.text = ""
            self.key_status, self.key_status_level = app.tr("key.saved", fingerprint=app.key_fingerprint), "ok"
