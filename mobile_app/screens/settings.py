"""Settings: server address, runtime, language, local training on/off and the device's upload token."""
from __future__ import annotations

from kivy.app import App
from kivy.properties import ListProperty, StringProperty
from kivy.uix.screenmanager import Screen

from ..i18n import LANGUAGE_NAMES, languages
from ..actions import runtime_names
from ..settings_store import AUTO_RUNTIME
from . import load_kv

load_kv(__file__)


class SettingsScreen(Screen):
    """Edits a copy of the settings; "Save" validates and stores them through the app."""

    status = StringProperty("")
    language_names = ListProperty([])
    runtimes = ListProperty([AUTO_RUNTIME])

    def on_kv_post(self, _base):
        self.language_names = [LANGUAGE_NAMES.get(c, c) for c in languages()]
        self.runtimes = [AUTO_RUNTIME, *runtime_names()]

    def on_pre_enter(self, *_args):
        app = App.get_running_app()
        s = app.settings
        self.ids.server.text = s.server_url
        self.ids.runtime.text = s.runtime
        self.ids.language.text = LANGUAGE_NAMES.get(s.language, s.language)
        self.ids.training.active = s.training_enabled
        self.ids.token.text = s.device_token      # a password field: shown as dots
        self.status = app.settings_error

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
