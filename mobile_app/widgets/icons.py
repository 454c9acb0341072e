"""Navigation icons drawn with Kivy's vector instructions (no icon font or image files to ship).

Each icon fits a square of side `size` centred on `center`; lines are 1.6 dp wide.
"""
from __future__ import annotations

import math

from kivy.graphics import Color, Ellipse, Line
from kivy.metrics import dp

ICONS = ("home", "diagnose", "history", "train", "settings")


def draw_icon(canvas, name: str, center: tuple[float, float], size: float, tint) -> None:
    """Draw icon `name` (one of ICONS; anything else draws nothing) into `canvas`."""
    cx, cy = center
    r = size * 0.42
    w = dp(1.6)
    with canvas:
        Color(*tint)
        if name == "home":                      # a house: roof and walls, with a door
            Line(points=[cx - r, cy, cx, cy + r, cx + r, cy], width=w)
            Line(points=[cx - r * 0.7, cy + r * 0.1, cx - r * 0.7, cy - r, cx + r * 0.7, cy - r,
                         cx + r * 0.7, cy + r * 0.1], width=w)
            Line(rectangle=(cx - r * 0.2, cy - r, r * 0.4, r * 0.6), width=w)
        elif name == "diagnose":                # an eye: two lids and the pupil
            lid = [(cx + r * math.cos(a), cy + r * 0.55 * math.sin(a)) for a in
                   [i * math.pi / 12 for i in range(25)]]
            Line(points=[v for p in lid for v in p], width=w, close=True)
            Ellipse(pos=(cx - r * 0.3, cy - r * 0.3), size=(r * 0.6, r * 0.6))
        elif name == "history":                 # a clock
            Line(circle=(cx, cy, r), width=w)
            Line(points=[cx, cy + r * 0.65, cx, cy, cx + r * 0.45, cy - r * 0.3], width=w)
        elif name == "train":                   # a rising line: the model improving
            Line(points=[cx - r, cy - r * 0.6, cx - r * 0.3, cy, cx + r * 0.1, cy - r * 0.35, cx + r, cy + r * 0.6],
                 width=w)
            Line(points=[cx + r * 0.45, cy + r * 0.6, cx + r, cy + r * 0.6, cx + r, cy + r * 0.1], width=w)
        elif name == "settings":                # a gear: a ring and eight teeth
            Line(circle=(cx, cy, r * 0.55), width=w)
            Line(circle=(cx, cy, r * 0.2), width=w)
            for i in range(8):
                a = i * math.pi / 4
                Line(points=[cx + r * 0.55 * math.cos(a), cy + r * 0.55 * math.sin(a),
                             cx + r * math.cos(a), cy + r * math.sin(a)], width=w * 1.5)
