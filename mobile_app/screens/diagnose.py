"""Diagnose: patient, eye and operator; choose or take a photo; grade it on the device; show the
referral decision as the headline, the grade second, and the model's card under every result."""
from __future__ import annotations

from pathlib import Path

from kivy.app import App
from kivy.clock import Clock
from kivy.factory import Factory
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.screenmanager import Screen

from .. import result_view
from ..percent import largest_remainder_percentages
from ..widgets import LEVEL_TEXT, scroll_into_view
from . import load_kv

load_kv(__file__)

BODY = (0.1, 0.1, 0.12, 1)
MAX_FIELD = 64          # what the edge client records for a patient id or an operator (issue 14)


def field_ok(text: str) -> bool:
    """A patient id or name the edge client accepts: at most 64 printable characters."""
    return len(text) <= MAX_FIELD and text.isprintable()


class DiagnoseScreen(Screen):
    """The screening workflow. `outcome` holds the last GradeOutcome (tests read it), `view` the
    ResultView shown for it."""

    photo = StringProperty("")
    status = StringProperty("")
    grading = BooleanProperty(False)
    photo_ready = BooleanProperty(False)       # the chosen photo is still there to grade
    has_camera = BooleanProperty(False)
    eye = StringProperty("")                   # "left" | "right" | "" (not said)
    outcome = ObjectProperty(None, allownone=True)

    def on_kv_post(self, _base):
        app = App.get_running_app()
        self.has_camera = bool(app.picker.has_camera)
        self.ids.operator.text = app.settings.operator
        self.result_widgets: dict = {}
        self.view = None
        app.bind(lang=self._rerender, model=self._rerender)
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
        if self.photo and self.photo != str(result.path):
            app.picker.release(self.photo)           # a photo chosen but never graded
        self.photo, self.photo_ready = str(result.path), True
        self.outcome = None
        self._rerender()

    def grade(self) -> None:
        """Grade the previewed photo in the background (the UI keeps drawing)."""
        if not self.photo_ready or self.grading:
            return
        app = App.get_running_app()
        operator, patient = self.ids.operator.text.strip(), self.ids.patient.text.strip()
        if not all(field_ok(v) for v in (operator, patient)):
            self.status = app.tr("diagnose.bad_field")
            return
        if operator != app.settings.operator:
            app.save_settings(operator=operator)      # remembered for the next result
        self.grading, self.outcome = True, None
        self._rerender()
        app.grade(self.photo, self._on_graded, patient_id=patient, eye=self.eye, operator=operator)

    def _on_graded(self, outcome) -> None:
        self.grading = False
        self.photo_ready = Path(self.photo).is_file()   # a picked copy is deleted once graded
        self.outcome = outcome
        self._rerender()
        Clock.schedule_once(lambda _dt: scroll_into_view(self.ids.result_title), 0)

    # ---- rendering --------------------------------------------------------------------------
    def _rerender(self, *_args) -> None:
        app = App.get_running_app()
        box = self.ids.result
        box.clear_widgets()
        self.result_widgets, self.view = {}, None
        o = self.outcome
        if self.grading:
            self.status = app.tr("diagnose.grading")
            return
        if o is None:
            self.status = app.tr("diagnose.no_model") if app.model is None else \
                ("" if self.photo else app.tr("diagnose.no_photo"))
            self._add(box, "placeholder", Factory.BodyLabel(text=app.tr("diagnose.result_here"), color=(0.4, 0.4, 0.45, 1)))
            return
        self.status = "" if self.photo_ready else app.tr("diagnose.next_photo")
        if o.status == "ok":
            self._render_diagnosis(box, o.diagnosis)
        elif o.status == "unusable":
            self._render_unusable(box, o)
        elif o.status == "no_model":
            self._add(box, "error", Factory.BodyLabel(text=app.tr("diagnose.no_model"), color=LEVEL_TEXT["error"]))
        elif o.status == "unreadable":
            self._add(box, "error", Factory.BodyLabel(text=app.tr("diagnose.error", reason=o.reason),
                                                     color=LEVEL_TEXT["error"], bold=True))
        else:
            self._add(box, "error", Factory.BodyLabel(text=app.tr("diagnose.failed", reason=o.reason),
                                                     color=LEVEL_TEXT["error"], bold=True))

    def _add(self, box, key: str, widget):
        box.add_widget(widget)
        self.result_widgets[key] = widget
        return widget

    def _render_unusable(self, box, o) -> None:
        """The gate's reason and what to do, in the user's words; "refer" once the client says
        this eye could not be graded after repeated attempts."""
        app = App.get_running_app()
        reason, hint = app.tr(f"quality.{o.reason}"), app.tr(f"hint.{o.reason}")
        reason = o.reason if reason == f"quality.{o.reason}" else reason
        hint = o.hint if hint == f"hint.{o.reason}" else hint
        if o.refer:           # no more retakes: the person goes to a specialist
            hint = app.tr("hint.ungradable")
            self._add(box, "decision", Factory.Banner(text=app.tr("decision.ungradable_refer"), level="error"))
        self._add(box, "error", Factory.BodyLabel(text=app.tr("diagnose.unusable", reason=reason),
                                                 color=LEVEL_TEXT["error"], bold=True))
        self._add(box, "hint", Factory.BodyLabel(text=app.tr("diagnose.hint", hint=hint)))
        self._add(box, "disclaimer", Factory.BodyLabel(text=app.tr("diagnose.disclaimer"), bold=True))

    def _render_diagnosis(self, box, d) -> None:
        app = App.get_running_app()
        manifest = app.manifest if app.model is not None and app.model.version == d.model_version else {}
        v = self.view = result_view.view(d, created=manifest.get("created", ""), privacy=manifest.get("privacy"))
        self._add(box, "decision", Factory.Banner(text=app.tr(f"decision.{v.decision}"), level=v.level))
        if v.p_referable is not None:        # the evidence for the decision, in the user's words
            self._add(box, "p_referable", Factory.BodyLabel(text=app.tr(
                "result.p_referable", grade=v.refer_at_grade, percent=int(round(100 * v.p_referable))), bold=True))
        if v.threshold is not None:
            self._add(box, "threshold", Factory.BodyLabel(text=app.tr(
                "result.threshold", threshold=int(round(100 * v.threshold)))))
        if v.reason and app.lang == "en":    # the client's own line is English
            self._add(box, "reason", Factory.BodyLabel(text=app.tr("result.reason", reason=v.reason)))
        percents = largest_remainder_percentages(d.probabilities)
        self._add(box, "grade", Factory.BodyLabel(
            text=app.tr("result.grade", grade=app.tr(f"grade.{d.grade}"), percent=percents[d.grade]),
            bold=v.p_referable is None))
        bars = []
        for i, (p, pct) in enumerate(zip(d.probabilities, percents)):
            bar = Factory.ProbabilityBar(label=app.tr(f"grade.{i}"), value=float(p), percent=pct,
                                         highlight=(i == d.grade))
            box.add_widget(bar)
            bars.append(bar)
        self.result_widgets["bars"] = bars
        for i, line in enumerate(v.workflow):
            self._add(box, f"workflow{i}", Factory.BodyLabel(text=app.tr(line.key, **line.values)))
        if d.personal_head:
            self._add(box, "personal", Factory.BodyLabel(text=app.tr("diagnose.personal")))
        self._add(box, "card_title", Factory.BodyLabel(text=app.tr("card.title"), bold=True))
        for i, line in enumerate(v.card):
            self._add(box, f"card{i}", Factory.BodyLabel(text=app.tr(line.key, **line.values),
                                                        color=LEVEL_TEXT["warn"] if line.warn else BODY,
                                                        bold=line.warn))
        self._add(box, "disclaimer", Factory.BodyLabel(text=app.tr("diagnose.disclaimer"), bold=True))
        self._add(box, "seconds", Factory.BodyLabel(text=app.tr("diagnose.seconds", seconds=f"{d.seconds:.2f}"),
                                                   color=(0.35, 0.35, 0.4, 1)))
