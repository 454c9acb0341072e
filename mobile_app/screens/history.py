"""History: past results on this device, newest first; delete (confirmed) and CSV export through
the share sheet."""
from __future__ import annotations

from pathlib import Path

from kivy.app import App
from kivy.factory import Factory
from kivy.metrics import dp
from kivy.properties import ListProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen

from ..widgets import LEVEL_TEXT
from . import load_kv

load_kv(__file__)

MAX_ROWS = 200   # older entries stay in the export; a phone should not build thousands of rows


# The history's decisions (issue 14) -> the row's words; "refused" rows are photos the gate refused.
ROW_DECISION = {"refer": "refer", "no_referral": "no_referral", "uncertain_refer": "uncertain_refer",
                "ungradable": "ungradable_refer", "refused": "refused"}


def entry_decision(entry) -> str:
    """The decision a history row shows: the client's (issue 14) or refer / no referral."""
    decision = ROW_DECISION.get(getattr(entry, "decision", None) or "")
    return decision or ("refer" if entry.refer else "no_referral")


def row_text(app, entry) -> str:
    """One history row in the user's words: who, when, the decision, the grade, the model."""
    decision = entry_decision(entry)
    when = str(getattr(entry, "local_time", None) or entry.time)[:16].replace("T", " ")
    if decision == "refused":
        code = getattr(entry, "refusal", None) or ""
        reason = app.tr(f"quality.{code}")
        what = app.tr("history.refused", reason=code if reason == f"quality.{code}" else reason)
        text = f"{when} · {what}"
    else:
        grade = app.tr(f"grade.{entry.grade}") if entry.grade is not None else "—"
        text = app.tr("history.row", time=when, grade=grade, decision=app.tr(f"history.{decision}"),
                      version=entry.model_version)
    eye = getattr(entry, "eye", None)
    who = " · ".join(x for x in (getattr(entry, "patient_id", None) or "",
                                  app.tr(f"history.eye_{eye}") if eye in ("left", "right") else "") if x)
    return f"{who}\n{text}" if who else text


class HistoryScreen(Screen):
    """`entries` holds what is shown (edge_client HistoryEntry objects, newest first)."""

    entries = ListProperty([])
    status = StringProperty("")

    def on_kv_post(self, _base):
        App.get_running_app().bind(lang=lambda *_a: self._render())
        self.popup = None

    def on_pre_enter(self, *_args):
        self.reload()

    def reload(self) -> None:
        """Read the history again (in the background)."""
        App.get_running_app().load_history(self._loaded)

    def _loaded(self, entries) -> None:
        self.entries = list(entries)
        self._render()

    def ask_delete(self, entry_id) -> None:
        """Delete one entry after the user confirms it."""
        app = App.get_running_app()
        self.popup = app.confirm(title=app.tr("history.delete_title"), message=app.tr("history.delete_message"),
                                 confirm=app.tr("history.delete"), on_confirm=lambda: self.delete(entry_id))

    def delete(self, entry_id) -> None:
        """Delete one entry, then reload."""
        App.get_running_app().delete_history(entry_id, self.reload)

    def export(self) -> None:
        """Export every entry as CSV and offer it through the share sheet."""
        self.status = App.get_running_app().tr("history.exporting")
        App.get_running_app().export_history(self._exported)

    def _exported(self, path: str, shared: bool, error: str) -> None:
        app = App.get_running_app()
        if not path:
            self.status = app.tr("history.export_failed", reason=error)
        elif error:
            self.status = app.tr("history.share_failed", path=path)
        else:      # the share sheet shows where it goes; a desktop keeps it where it was written
            self.status = app.tr("history.shared", path=Path(path).name) if shared else \
                app.tr("history.exported", path=path)
        self.export_path = path

    def _render(self) -> None:
        app = App.get_running_app()
        rows = self.ids.rows
        rows.clear_widgets()
        if not self.entries:
            rows.add_widget(Factory.BodyLabel(text=app.tr("history.empty")))
            return
        for e in self.entries[:MAX_ROWS]:
            decision = entry_decision(e)
            row = BoxLayout(size_hint_y=None, spacing=dp(8))
            level = {"no_referral": "ok", "uncertain_refer": "warn", "refused": "info"}.get(decision, "error")
            label = Factory.BodyLabel(text=row_text(app, e), size_hint_x=0.68, color=LEVEL_TEXT[level])
            button = Factory.DangerButton(text=app.tr("history.delete"), size_hint_x=0.32)
            button.entry_id = e.id
            button.bind(on_release=lambda b: self.ask_delete(b.entry_id))
            row.add_widget(label)
            row.add_widget(button)
            row.height = max(dp(56), label.height)
            label.bind(height=lambda lab, h, r=row: setattr(r, "height", max(dp(56), h)))
            rows.add_widget(row)
