"""Shared widgets: readable labels, large buttons, the probability bar.

`load()` registers their kv rules once; the app calls it before any screen loads its own kv.
Sizes are in dp/sp so they hold on any screen density: every touch target is at least 48 dp
and body text at least 16 sp (the UI tests check both on every screen).
"""
from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder
from kivy.metrics import dp, sp
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.togglebutton import ToggleButton

MIN_TOUCH_DP = 48
MIN_BODY_SP = 16
_KV = Path(__file__).with_name("common.kv")
_loaded = False


class BodyLabel(Label):
    """Wrapping text at least 16 sp; its height follows its text."""


class TitleLabel(BodyLabel):
    """A screen's heading."""


class BigButton(Button):
    """A main action: at least 56 dp tall."""


class NavButton(ToggleButton):
    """One tab of the bottom navigation bar."""

    screen = StringProperty("")


class ProbabilityBar(BoxLayout):
    """One grade's name, a bar as long as its probability, and its displayed percentage."""

    label = StringProperty("")
    value = NumericProperty(0.0)       # probability 0..1 (bar length)
    percent = NumericProperty(0)       # whole percentage shown (largest remainder, sums to 100)
    highlight = BooleanProperty(False)


def load() -> None:
    """Register the shared kv rules (idempotent)."""
    global _loaded
    if not _loaded:
        Builder.load_file(str(_KV))
        _loaded = True


__all__ = ["BigButton", "BodyLabel", "MIN_BODY_SP", "MIN_TOUCH_DP", "NavButton", "ProbabilityBar",
           "TitleLabel", "dp", "load", "sp"]
