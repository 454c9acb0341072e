"""Shared widgets: readable labels, large buttons, destructive buttons, banners, navigation tabs,
the probability bar, a confirmation dialog and the two-pane layout.

`load()` registers their kv rules once; the app calls it before any screen loads its own kv.
Sizes are in dp/sp so they hold on any screen density: every touch target is at least 48 dp
and text at least 16 sp (the UI tests check both on every screen).
"""
from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder
from kivy.metrics import dp, sp
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ToggleButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.scrollview import ScrollView
from kivy.uix.togglebutton import ToggleButton
from kivy.uix.widget import Widget

from .icons import draw_icon

MIN_TOUCH_DP = 48
MIN_BODY_SP = 16
WIDE_DP = 600            # two panes from this window width on
_KV = Path(__file__).with_name("common.kv")
_loaded = False

# Colours by meaning (text on white, and the filled banner backgrounds).
LEVEL_TEXT = {"ok": (0.08, 0.42, 0.18, 1), "info": (0.05, 0.3, 0.6, 1), "warn": (0.6, 0.33, 0.0, 1),
              "error": (0.7, 0.1, 0.1, 1)}
LEVEL_FILL = {"ok": (0.1, 0.5, 0.22, 1), "info": (0.1, 0.35, 0.65, 1), "warn": (0.85, 0.5, 0.05, 1),
              "error": (0.75, 0.12, 0.12, 1)}


class BodyLabel(Label):
    """Wrapping text at least 16 sp; its height follows its text."""


class TitleLabel(BodyLabel):
    """A screen's heading."""


class BigButton(Button):
    """A main action: at least 56 dp tall."""


class DangerButton(BigButton):
    """A destructive action (delete, discard, replace): red, and always confirmed first."""


class Banner(BodyLabel):
    """A coloured band with white text: the referral decision, or Home's state."""

    level = StringProperty("info")
    fill = ListProperty(LEVEL_FILL["info"])

    def on_level(self, _w, level):
        self.fill = LEVEL_FILL.get(level, LEVEL_FILL["info"])


class NavIcon(Widget):
    """A small line drawing for a navigation tab (no icon font needed)."""

    name = StringProperty("")
    tint = ListProperty([1, 1, 1, 1])

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bind(pos=self._redraw, size=self._redraw, name=self._redraw, tint=self._redraw)

    def _redraw(self, *_args):
        self.canvas.clear()
        draw_icon(self.canvas, self.name, self.center, min(self.width, self.height), self.tint)


class NavTab(ToggleButtonBehavior, BoxLayout):
    """One tab of the bottom bar: an icon above its label. Its width follows its label, so five
    tabs fit in 360 dp in every language without cutting a word."""

    screen = StringProperty("")
    text = StringProperty("")
    icon = StringProperty("")


class ProbabilityBar(BoxLayout):
    """One grade's name, a bar as long as its probability, and its displayed percentage."""

    label = StringProperty("")
    value = NumericProperty(0.0)       # probability 0..1 (bar length)
    percent = NumericProperty(0)       # whole percentage shown (largest remainder, sums to 100)
    highlight = BooleanProperty(False)


class ConfirmPopup(ModalView):
    """"Are you sure?" for destructive actions: `action()` runs only after the red button.
    (Not named on_confirm: Kivy binds "on_*" keyword arguments as event handlers.)"""

    title = StringProperty("")
    message = StringProperty("")
    confirm_text = StringProperty("")
    cancel_text = StringProperty("")
    action = ObjectProperty(None, allownone=True)

    def confirm(self) -> None:
        callback = self.action
        self.dismiss()
        if callback is not None:
            callback()


class Pane(BoxLayout):
    """One column of a screen (its height follows its content)."""


class TwoPane(BoxLayout):
    """Two Panes side by side from WIDE_DP on (each scrolls on its own), one scrolling column below.

    Screens declare two `Pane` children in kv; the panes are moved, never rebuilt, so their ids
    stay valid when the layout changes.
    """

    wide = BooleanProperty(False)

    def __init__(self, **kwargs):
        self._panes: list[Pane] = []
        self._arranged: bool | None = None
        super().__init__(**kwargs)
        self.bind(width=self._arrange)

    def add_widget(self, widget, *args, **kwargs):
        if isinstance(widget, Pane):
            self._panes.append(widget)
            self._arrange()
            return
        super().add_widget(widget, *args, **kwargs)

    def _arrange(self, *_args) -> None:
        wide = self.width >= dp(WIDE_DP) and len(self._panes) > 1
        if wide == self._arranged and not any(p.parent is None for p in self._panes):
            return
        self._arranged = self.wide = wide
        for pane in self._panes:
            if pane.parent is not None:
                pane.parent.remove_widget(pane)
        self.clear_widgets()
        if wide:
            for pane in self._panes:
                scroll = ScrollView(do_scroll_x=False)
                scroll.add_widget(pane)
                super().add_widget(scroll)
        else:
            column = BoxLayout(orientation="vertical", size_hint_y=None)
            column.bind(minimum_height=column.setter("height"))
            for pane in self._panes:
                column.add_widget(pane)
            scroll = ScrollView(do_scroll_x=False)
            scroll.add_widget(column)
            super().add_widget(scroll)


def scroll_into_view(widget) -> None:
    """Scroll the nearest ScrollView so that `widget`'s top is at the top of the view (a result
    is read from its first line), as far as the content allows."""
    parent = widget.parent
    while parent is not None and not isinstance(parent, ScrollView):
        parent = parent.parent
    if parent is None or not parent.children:
        return
    content = parent.children[0]
    scrollable = content.height - parent.height
    if scrollable <= 0:
        return
    _, top = content.to_widget(*widget.to_window(widget.x, widget.top))
    parent.scroll_y = max(0.0, min(1.0, 1 - (content.height - top) / scrollable))


def load() -> None:
    """Register the shared kv rules (idempotent)."""
    global _loaded
    if not _loaded:
        Builder.load_file(str(_KV))
        _loaded = True


__all__ = ["Banner", "BigButton", "BodyLabel", "ConfirmPopup", "DangerButton", "LEVEL_FILL", "LEVEL_TEXT",
           "MIN_BODY_SP", "MIN_TOUCH_DP", "NavIcon", "NavTab", "Pane", "ProbabilityBar", "TitleLabel", "ToggleButton",
           "TwoPane", "WIDE_DP", "dp", "load", "scroll_into_view", "sp"]
