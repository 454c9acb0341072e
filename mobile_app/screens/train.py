"""Train (clinic tablets, shown only when enabled in Settings): local labelled photos and a
training round. Local training is filled in by a later issue; until then the screen says so."""
from __future__ import annotations

from kivy.properties import NumericProperty
from kivy.uix.screenmanager import Screen

from . import load_kv

load_kv(__file__)


class TrainScreen(Screen):
    """Placeholder that tells the truth: nothing trains here yet."""

    photo_count = NumericProperty(0)
