"""Train (clinic tablets, shown only when enabled in Settings): a specialist's labelled photos,
their privacy budget, one DP training round (personal or federated) and the update queue.

Thin: the app runs `mobile_app.actions` in a worker thread and calls back here on the UI thread.
"""
from __future__ import annotations

from pathlib import Path

from kivy.app import App
from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen

from edge_client.device_guarantee import composed_figures
from edge_client.privacy_figures import epsilon_str

from . import load_kv

load_kv(__file__)


class UpdateRow(BoxLayout):
    """One queued update: its line of facts, and Approve / Discard while it can change."""

    update_id = NumericProperty(0)
    text = StringProperty("")
    can_approve = BooleanProperty(False)
    can_discard = BooleanProperty(False)


class TrainScreen(Screen):
    """`labels` holds the last LabelsOutcome, `outcome` the last TrainOutcome, `queue` the
    QueuedUpdates shown (tests read them)."""

    labels_csv = StringProperty("")
    labels = ObjectProperty(None, allownone=True)
    checking = BooleanProperty(False)
    training = BooleanProperty(False)
    uploading = BooleanProperty(False)
    mode = StringProperty("federated")
    progress = NumericProperty(0)              # 0..1 of the current stage
    progress_text = StringProperty("")
    result_text = StringProperty("")
    upload_text = StringProperty("")
    outcome = ObjectProperty(None, allownone=True)
    queue = ObjectProperty([])
    has_approved = BooleanProperty(False)
    labels_line = StringProperty("")           # which file (and "checking...")
    photos_line = StringProperty("")           # count, patients, photos per grade
    problems_line = StringProperty("")         # every bad row of a bad file
    budget_line = StringProperty("")           # the photo set's privacy budget
    mode_line = StringProperty("")             # what the chosen mode does

    def on_kv_post(self, _base):
        app = App.get_running_app()
        self.popup = None
        app.bind(lang=lambda *_a: (self._render_queue(), self._render_labels()))
        self.bind(labels=self._render_labels, labels_csv=self._render_labels, checking=self._render_labels,
                  mode=self._render_labels)
        self._render_labels()

    def on_pre_enter(self, *_args):
        self.refresh_queue()

    # ---- labels -------------------------------------------------------------------------------
    def pick(self) -> None:
        """Ask the platform picker for the specialist's labels CSV."""
        App.get_running_app().picker.pick_labels(self._on_picked)

    def _on_picked(self, result) -> None:
        app = App.get_running_app()
        if result.path is None:
            if result.error:
                self.result_text = app.tr("train.status_failed", reason=result.error)
            return
        self.labels_csv, self.labels, self.result_text = str(result.path), None, ""
        self.reload_labels()

    def reload_labels(self) -> None:
        """Re-read the photo list and the set's budget (after picking, and after each round)."""
        if not self.labels_csv:
            return
        self.checking = True
        App.get_running_app().load_labels(self.labels_csv, self._on_labels)

    def _on_labels(self, outcome) -> None:
        self.checking = False
        self.labels = outcome

    def _render_labels(self, *_args) -> None:
        app = App.get_running_app()
        self.labels_line = (app.tr("train.labels_file", name=Path(self.labels_csv).name) if self.labels_csv
                            else app.tr("train.no_labels")) + ("\n" + app.tr("train.checking") if self.checking else "")
        self.mode_line = app.tr("train.explain_personal") if self.mode == "personal" else \
            app.tr("train.explain_federated")
        b = self.labels
        ok = b is not None and b.status == "ok"
        counts = ", ".join(f"{app.tr(f'grade.{g}')} {n}" for g, n in enumerate(b.histogram)) if ok else ""
        self.photos_line = (app.tr("train.photos", count=b.photos, patients=b.patients) + "\n"
                            + app.tr("train.histogram", counts=counts)) if ok else ""
        self.budget_line = app.tr("train.budget", spent=epsilon_str(b.spent), budget=f"{b.budget:.2f}",
                                  delta=f"{b.delta:g}", rounds=b.rounds) if ok else ""
        self.problems_line = ("\n".join([app.tr("train.bad_rows"), *b.problems[:20]])
                              if b is not None and b.status == "bad" else "")

    # ---- the round ----------------------------------------------------------------------------
    def epsilon(self) -> float | None:
        """The ε typed for this round, or None when it is not a number above 0."""
        try:
            value = float(self.ids.epsilon.text.strip().replace(",", "."))
        except ValueError:
            return None
        return value if 0 < value < 1e3 else None

    def train(self) -> None:
        """Run the round in the background; the bar follows its stages."""
        app = App.get_running_app()
        if self.training or self.labels is None or self.labels.status != "ok":
            return
        epsilon = self.epsilon()
        if epsilon is None:
            self.result_text = app.tr("train.bad_epsilon")
            return
        self.training, self.outcome, self.progress = True, None, 0
        self.progress_text, self.result_text = app.tr("train.starting"), ""
        app.train_round(self.labels_csv, self.mode, epsilon, self._on_progress, self._on_trained)

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        if not self.training:
            return
        self.progress = done / total if total else 0
        self.progress_text = App.get_running_app().tr(f"train.stage_{stage}", done=done, total=total)

    def _on_trained(self, outcome) -> None:
        app = App.get_running_app()
        self.training, self.outcome, self.progress_text = False, outcome, ""
        if outcome.status == "ok":
            r = outcome.result
            self.progress = 1
            text = app.tr("train.done", photos=r.photos, steps=r.steps, epsilon=epsilon_str(r.epsilon_spent),
                          round=epsilon_str(r.epsilon_round),
                          before=round(100 * r.accuracy_before), after=round(100 * r.accuracy_after))
            both = composed_figures(r.model_privacy, epsilon=r.epsilon_spent, delta=r.delta, seeded=r.seeded)
            if both is not None:
                text += " " + app.tr("train.both", epsilon=both[0], delta=both[1])
            if r.mode == "federated":
                text += " " + app.tr("train.done_federated")
            self.result_text = text
        else:
            reason = "; ".join(outcome.problems) if outcome.problems else outcome.reason
            self.result_text = app.tr(f"train.status_{outcome.status}", reason=reason)
        self.reload_labels()
        self.refresh_queue()

    def ask_stop_personal(self) -> None:
        """Going back to the shared head deletes the personal one (its ε stays spent): confirm first."""
        app = App.get_running_app()
        self.popup = app.confirm(title=app.tr("train.personal_stop"), message=app.tr("train.personal_stop_message"),
                                 confirm=app.tr("train.personal_stop"), on_confirm=self.stop_personal)

    def stop_personal(self) -> None:
        app = App.get_running_app()
        app.stop_personal_head()
        self.result_text = app.tr("train.personal_stopped")

    # ---- the queue ----------------------------------------------------------------------------
    def refresh_queue(self) -> None:
        App.get_running_app().load_updates(self._on_queue)

    def _on_queue(self, updates) -> None:
        self.queue = list(updates)
        self.has_approved = any(u.status == "approved" for u in self.queue)
        self._render_queue()

    def _render_queue(self) -> None:
        app = App.get_running_app()
        box = self.ids.queue
        box.clear_widgets()
        for u in self.queue:
            text = app.tr("train.queue_row", id=u.id, version=u.base_version, epsilon=epsilon_str(u.epsilon),
                          steps=u.steps, status=app.tr(f"train.update_{u.status}"))
            row = UpdateRow(update_id=u.id, text=text, can_approve=u.status == "pending",
                            can_discard=u.status in ("pending", "approved"))
            row.ids.approve.bind(on_release=lambda b, i=u.id: self.change(i, True))
            row.ids.discard.bind(on_release=lambda b, i=u.id: self.ask_discard(i))
            box.add_widget(row)

    def ask_discard(self, update_id: int) -> None:
        """Discarding drops the update for good (its ε stays spent): confirm first."""
        app = App.get_running_app()
        self.popup = app.confirm(title=app.tr("train.discard_title", id=update_id),
                                 message=app.tr("train.discard_message"), confirm=app.tr("train.discard"),
                                 on_confirm=lambda: self.change(update_id, False))

    def change(self, update_id: int, approve: bool) -> None:
        """Approve or discard one update, then show the queue again."""
        def done(error: str) -> None:
            if error:
                self.upload_text = error
            self.refresh_queue()
        App.get_running_app().change_update(update_id, approve, done)

    def upload(self) -> None:
        """Upload the approved updates to the hub in Settings, with the device token."""
        if self.uploading:
            return
        self.uploading = True
        self.upload_text = App.get_running_app().tr("train.uploading")
        App.get_running_app().upload_updates(self._on_uploaded)

    def _on_uploaded(self, outcome) -> None:
        app = App.get_running_app()
        self.uploading = False
        reason = " ".join(outcome.messages[-2:])
        self.upload_text = app.tr(f"train.upload_{outcome.status}", count=len(outcome.uploaded), reason=reason)
        self.refresh_queue()
