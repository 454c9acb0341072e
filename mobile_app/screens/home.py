"""Home: what the device can do right now (banners that tell the truth), the installed model's
card, and "check for update" with a progress bar that never blocks grading."""
from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.screenmanager import Screen

from ..home_state import home_banners
from ..result_view import card_lines, privacy_line
from ..widgets import LEVEL_TEXT
from . import load_kv

load_kv(__file__)


class HomeScreen(Screen):
    """Shows what model grades photos here, how private its training was, and the connection."""

    model_text = StringProperty("")
    privacy_text = StringProperty("")
    privacy_warn = BooleanProperty(False)
    status = StringProperty("")
    status_level = StringProperty("info")
    details = StringProperty("")      # the edge client's own words for a failure (for support)
    syncing = BooleanProperty(False)
    progress = NumericProperty(0)     # 0..100

    def on_kv_post(self, _base):
        app = App.get_running_app()
        app.bind(model=self._render, lang=self._render, personal_head=self._render, manifest=self._render,
                 online=self._render_banners, offered=self._render_banners, index_stale=self._render_banners,
                 model_withdrawn=self._render_banners,
                 server_url=self._render_banners)
        self._cancel = None
        self.banners: list = []
        self._render()

    def _render(self, *_args) -> None:
        app = App.get_running_app()
        self._render_banners()
        self.ids.card.clear_widgets()
        m = app.model
        if m is None:
            self.model_text = app.tr("home.no_model")
            self.privacy_text, self.privacy_warn = "", False
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
        privacy = app.manifest.get("privacy") if app.manifest else \
            {"epsilon": m.epsilon, "delta": m.delta, "accountant": m.accountant}
        line = privacy_line(privacy)
        self.privacy_text, self.privacy_warn = app.tr(line.key, **line.values), line.warn
        box = self.ids.card                  # validation and calibration, as on every result
        for item in card_lines(getattr(m, "card", None), version=m.version, created=m.created, privacy=privacy):
            if item.key in ("card.validated", "card.not_validated", "card.calibrated", "card.not_calibrated"):
                box.add_widget(Factory.BodyLabel(text=app.tr(item.key, **item.values), bold=item.warn,
                                                 color=LEVEL_TEXT["warn"] if item.warn else (0.1, 0.1, 0.12, 1)))

    def _render_banners(self, *_args) -> None:
        app = App.get_running_app()
        box = self.ids.banners
        box.clear_widgets()
        installed = app.model.version if app.model is not None else None
        self.banners = home_banners(installed=installed, server_set=bool(app.server_url), online=app.online,
                                    offered=app.offered if app.offered >= 0 else None,
                                    index_stale=app.index_stale, index_expires=app.index_expires,
                                    withdrawn=app.model_withdrawn)
        for b in self.banners:
            box.add_widget(Factory.Banner(text=app.tr(b.key, **b.values), level=b.level))

    def check_update(self) -> None:
        """Start a sync (the button's action)."""
        if self.syncing:
            return
        app = App.get_running_app()
        self.syncing, self.progress, self.details = True, 0, ""
        self.status, self.status_level = app.tr("home.checking"), "info"
        self._cancel = app.check_update(self._on_progress, self._on_done)

    def cancel(self) -> None:
        """Ask the running sync to stop."""
        if self._cancel is not None:
            self._cancel.set()

    def _on_progress(self, done: int, total: int) -> None:
        if total > 0 and self.syncing:
            self.progress = min(100, 100 * done / total)
            self.status = App.get_running_app().tr("home.progress", done=done // 1024, total=max(1, total // 1024))

    def _on_done(self, outcome) -> None:
        app = App.get_running_app()
        self.syncing, self._cancel = False, None
        if outcome.status == "updated":
            self.progress = 100
            self.status, self.status_level = app.tr("home.updated", version=outcome.version), "ok"
        elif outcome.status == "current":
            self.status, self.status_level = app.tr("home.no_update"), "ok"
        elif outcome.status == "cancelled":
            self.status, self.status_level = app.tr("home.cancelled"), "info"
        else:
            self.status, self.status_level = app.tr(outcome.error_key or "error.unexpected"), "error"
            self.details = outcome.message        # the client's own line, for whoever supports the clinic
