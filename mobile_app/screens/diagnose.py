"""Diagnose: choose or take a photo, preview it, grade it on the device, show the result."""
from __future__ import annotations

from kivy.app import App
from kivy.clock import Clock
from kivy.factory import Factory
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.screenmanager import Screen

from ..percent import largest_remainder_percentages
from . import load_kv

load_kv(__file__)


class DiagnoseScreen(Screen):
    """The screening workflow. `outcome` holds the last GradeOutcome (tests read it)."""

    photo = StringProperty("")
    status = StringProperty("")
    grading = BooleanProperty(False)
    has_camera = BooleanProperty(False)
    outcome = ObjectProperty(None, allownone=True)

    def on_kv_post(self, _base):
        app = App.get_running_app()
        self.has_camera = bool(app.picker.has_camera)
        self.result_widgets: dict = {}
        app.bind(lang=self._rerender)
        self._rerender()

    def pick(self) -> None:
        """Ask the platform picker for a gallery photo."""
        App.get_running_app().picker.pick_photo(self._on_picked)

    def take(self) -> None:
        """Ask the platform picker for a camera photo."""
        App.get_running_app().picker.take_photo(self._on_picked)

    def _on_picked(self, result) -> None:
        app = App.get_running_app()
        if result.path is None:
            if result.error:
                self.status = app.tr("diagnose.error", reason=result.error)
            return
        self.photo = str(result.path)
        self.outcome = None
        self._rerender()

    def grade(self) -> None:
        """Grade the previewed photo in the background (the UI keeps drawing)."""
        if not self.photo or self.grading:
            return
        app = App.get_running_app()
        self.grading, self.outcome = True, None
        self._rerender()
        self.status = app.tr("diagnose.grading")
        app.grade(self.photo, self._on_graded)

    def _on_graded(self, outcome) -> None:
        self.grading = False
        self.outcome = outcome
        self._rerender()
        Clock.schedule_once(self._show_answer, 0)

    def _show_answer(self, _dt) -> None:
        """Bring the answer into view on a phone (it sits below the preview). Only when the
        content is taller than the view: ScrollView.scroll_to misplaces content that fits."""
        scroll = self.ids.scroll
        if scroll.children and scroll.children[0].height > scroll.height:
            scroll.scroll_to(self.ids.result, animate=False)

    # ---- rendering --------------------------------------------------------------------------
    def _rerender(self, *_args) -> None:
        app = App.get_running_app()
        box = self.ids.result
        box.clear_widgets()
        self.result_widgets = {}
        o = self.outcome
        if self.grading:
            self.status = app.tr("diagnose.grading")
            return
        if o is None:
            self.status = "" if self.photo else app.tr("diagnose.no_photo")
            if app.model is None:
                self.status = app.tr("diagnose.no_model")
            return
        self.status = ""
        if o.status == "ok":
            self._render_diagnosis(box, o.diagnosis)
        elif o.status == "unusable":
            # the gate's reason is a code: say it (and the hint) in the user's language if we can
            reason, hint = app.tr(f"quality.{o.reason}"), app.tr(f"hint.{o.reason}")
            reason = o.reason if reason == f"quality.{o.reason}" else reason
            hint = o.hint if hint == f"hint.{o.reason}" else hint
            self._add(box, "error", Factory.BodyLabel(text=app.tr("diagnose.unusable", reason=reason),
                                                     color=(0.7, 0.1, 0.1, 1), bold=True))
            self._add(box, "hint", Factory.BodyLabel(text=app.tr("diagnose.hint", hint=hint)))
        elif o.status == "no_model":
            self._add(box, "error", Factory.BodyLabel(text=app.tr("diagnose.no_model"), color=(0.7, 0.1, 0.1, 1)))
        elif o.status == "unreadable":
            self._add(box, "error", Factory.BodyLabel(text=app.tr("diagnose.error", reason=o.reason),
                                                     color=(0.7, 0.1, 0.1, 1), bold=True))
        else:
            self._add(box, "error", Factory.BodyLabel(text=app.tr("diagnose.failed", reason=o.reason),
                                                     color=(0.7, 0.1, 0.1, 1), bold=True))

    def _add(self, box, key: str, widget):
        box.add_widget(widget)
        self.result_widgets[key] = widget
        return widget

    def _render_diagnosis(self, box, d) -> None:
        app = App.get_running_app()
        name = app.tr(f"grade.{d.grade}")
        self._add(box, "grade", Factory.TitleLabel(text=app.tr("diagnose.result", grade=name)))
        percents = largest_remainder_percentages(d.probabilities)
        self._add(box, "confidence", Factory.BodyLabel(
            text=app.tr("diagnose.confidence", percent=percents[d.grade])))
        bars = []
        for i, (p, pct) in enumerate(zip(d.probabilities, percents)):
            bar = Factory.ProbabilityBar(label=app.tr(f"grade.{i}"), value=float(p), percent=pct,
                                         highlight=(i == d.grade))
            box.add_widget(bar)
            bars.append(bar)
        self.result_widgets["bars"] = bars
        advice = app.tr("advice.refer" if d.refer else "advice.no_refer")
        self._add(box, "advice", Factory.BodyLabel(
            text=advice, bold=True, color=(0.75, 0.25, 0.05, 1) if d.refer else (0.1, 0.45, 0.2, 1)))
        if d.personal_head:
            self._add(box, "personal", Factory.BodyLabel(text=app.tr("diagnose.personal")))
        self._add(box, "disclaimer", Factory.BodyLabel(text=app.tr("diagnose.disclaimer"), bold=True))
        self._add(box, "model", Factory.BodyLabel(text=app.tr(
            "diagnose.model_info", version=d.model_version, seconds=f"{d.seconds:.2f}")))
