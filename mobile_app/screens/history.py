"""History: past results on this device, newest first, with delete and CSV export."""
from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.metrics import dp
from kivy.properties import ListProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen

from . import load_kv

load_kv(__file__)

MAX_ROWS = 200   # older entries stay in the export; a phone should not build thousands of rows


class HistoryScreen(Screen):
    """`entries` holds what is shown (edge_client HistoryEntry objects, newest first)."""

    entries = ListProperty([])
    status = StringProperty("")

    def on_kv_post(self, _base):
        App.get_running_app().bind(lang=lambda *_a: self._render())

    def on_pre_enter(self, *_args):
        self.reload()

    def reload(self) -> None:
        """Read the history again (in the background)."""
        App.get_running_app().load_history(self._loaded)

    def _loaded(self, entries) -> None:
        self.entries = list(entries)
        self._render()

    def delete(self, entry_id) -> None:
        """Delete one entry, then reload."""
        App.get_running_app().delete_history(entry_id, self.reload)

    def export(self) -> None:
        """Export every entry as CSV and say where it went."""
        App.get_running_app().export_history(self._exported)

    def _exported(self, path: str, error: str) -> None:
        app = App.get_running_app()
        self.status = app.tr("history.exported", path=path) if path else app.tr("history.export_failed", reason=error)

    def _render(self) -> None:
        app = App.get_running_app()
        rows = self.ids.rows
        rows.clear_widgets()
        if not self.entries:
            rows.add_widget(Factory.BodyLabel(text=app.tr("history.empty")))
            return
        for e in self.entries[:MAX_ROWS]:
            row = BoxLayout(size_hint_y=None, spacing=dp(8))
            text = app.tr("history.row", time=str(e.time)[:16].replace("T", " "), grade=app.tr(f"grade.{e.grade}"),
                          advice=app.tr("history.refer" if e.refer else "history.no_refer"),
                          version=e.model_version)
            label = Factory.BodyLabel(text=text, size_hint_x=0.68)
            button = Factory.BigButton(text=app.tr("history.delete"), size_hint_x=0.32)
            button.entry_id = e.id
            button.bind(on_release=lambda b: self.delete(b.entry_id))
            row.add_widget(label)
            row.add_widget(button)
            row.height = max(dp(56), label.height)
            label.bind(height=lambda lab, h, r=row: setattr(r, "height", max(dp(56), h)))
            rows.add_widget(row)
