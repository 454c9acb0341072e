"""Home: the installed model's card, online/offline state, and "check for update"."""
from __future__ import annotations

from kivy.app import App
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.screenmanager import Screen

from . import load_kv

load_kv(__file__)


def _fmt_delta(delta) -> str:
    return f"{delta:.0e}".replace("e-0", "e-") if delta else "?"


class HomeScreen(Screen):
    """Shows what model grades photos here and how private its training was."""

    model_text = StringProperty("")
    privacy_text = StringProperty("")
    status = StringProperty("")
    syncing = BooleanProperty(False)
    progress = NumericProperty(0)     # 0..100

    def on_kv_post(self, _base):
        app = App.get_running_app()
        app.bind(model=self._render, lang=self._render, personal_head=self._render)
        self._cancel = None
        self._render()

    def _render(self, *_args) -> None:
        app = App.get_running_app()
        m = app.model
        if m is None:
            self.model_text = app.tr("home.no_model")
            self.privacy_text = ""
            return
        lines = [app.tr("home.version", version=m.version)]
        if getattr(m, "created", None):
            lines.append(app.tr("home.date", date=str(m.created)[:10]))
        acc = getattr(m, "accuracy", None)
        lines.append(app.tr("home.accuracy", accuracy=f"{acc * 100:.0f}") if acc is not None
                     else app.tr("home.accuracy_unknown"))
        if getattr(m, "runtime", None):
            lines.append(app.tr("home.runtime", runtime=m.runtime))
        if app.personal_head:
            lines.append(app.tr("home.personal"))
        self.model_text = "\n".join(lines)
        eps = getattr(m, "epsilon", None)
        self.privacy_text = (app.tr("home.privacy", epsilon=f"{eps:.2f}", delta=_fmt_delta(m.delta),
                                    accountant=m.accountant or "?")
                             if eps is not None else app.tr("home.privacy_none"))

    def check_update(self) -> None:
        """Start a sync (the button's action)."""
        if self.syncing:
            return
        app = App.get_running_app()
        self.syncing, self.progress = True, 0
        self.status = app.tr("home.checking")
        self._cancel = app.check_update(self._on_progress, self._on_done)

    def cancel(self) -> None:
        """Ask the running sync to stop."""
        if self._cancel is not None:
            self._cancel.set()

    def _on_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress = min(100, 100 * done / total)
            self.status = App.get_running_app().tr("home.progress", done=done // 1024, total=max(1, total // 1024))

    def _on_done(self, outcome) -> None:
        app = App.get_running_app()
        self.syncing, self._cancel = False, None
        if outcome.status == "updated":
            self.progress = 100
            self.status = app.tr("home.updated", version=outcome.version)
        elif outcome.status == "current":
            self.status = app.tr("home.no_update")
        elif outcome.status == "cancelled":
            self.status = app.tr("home.cancelled")
        else:
            self.status = app.tr("home.update_failed", reason=outcome.message)
