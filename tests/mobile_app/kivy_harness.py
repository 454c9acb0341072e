"""Headless Kivy for tests: environment before the first `import kivy`, touches, frames, checks.

Recipe (docs/DESIGN.md): SDL's offscreen driver with Mesa's software GL, no Kivy argv/config/log
files, a throwaway KIVY_HOME, the window size fixed in Config before the window exists (never
resized), frames advanced with EventLoop.idle(), buttons pressed by dispatching real touches.
"""
from __future__ import annotations

import os
import tempfile
import time


def headless(width: int, height: int) -> None:
    """Prepare the process for a headless window of exactly width x height pixels."""
    os.environ.update(SDL_VIDEODRIVER="offscreen", KIVY_NO_ARGS="1", KIVY_NO_FILELOG="1",
                      KIVY_NO_CONFIG="1", KIVY_HOME=tempfile.mkdtemp(prefix="kivy-home-"),
                      KIVY_METRICS_DENSITY="1", KIVY_METRICS_FONTSCALE="1",
                      KIVY_CLIPBOARD="dummy")   # no xclip/xsel probing in CI
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    from kivy.config import Config
    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "resizable", "0")
    Config.set("input", "mouse", "")            # no real input devices in CI
    for key in [k for k in Config.options("input") if k != "mouse"]:
        Config.remove_option("input", key)


class Driver:
    """Pumps frames and taps widgets in the running app's window."""

    def __init__(self):
        from kivy.base import EventLoop
        from kivy.core.window import Window
        self.loop, self.window = EventLoop, Window
        self._touch_id = 0

    def pump(self, frames: int = 1) -> None:
        for _ in range(frames):
            self.loop.idle()

    def wait(self, condition, what: str, timeout: float = 60.0) -> int:
        """Pump frames until `condition()` holds; returns how many frames it took."""
        start, frames = time.monotonic(), 0
        while not condition():
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.loop.idle()
            frames += 1
        return frames

    def tap(self, widget) -> None:
        """A finger down and up on the widget's centre, through Kivy's input dispatch."""
        from kivy.input.motionevent import MotionEvent

        class Touch(MotionEvent):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.type_id = "touch"

            def depack(self, args):
                self.is_touch = True
                self.sx, self.sy = args
                super().depack(args)

        from kivy.uix.scrollview import ScrollView

        self.pump(2)        # let what the last frame scheduled (a scroll, a re-layout) happen first
        if widget.disabled:
            raise AssertionError(f"cannot tap disabled {type(widget).__name__} {getattr(widget, 'text', '')!r}")
        parent = widget.parent
        while parent is not None and not isinstance(parent, ScrollView) and parent is not self.window:
            parent = parent.parent          # (the Window is its own parent)
        parent = parent if isinstance(parent, ScrollView) else None
        if parent is not None and not self._inside(widget, parent):   # scroll into view, as a person would
            parent.scroll_to(widget, animate=False)
            self.pump(2)
        x, y = widget.to_window(*widget.center)
        w, h = self.window.system_size
        if not (0 <= x < w and 0 <= y < h):
            raise AssertionError(f"{type(widget).__name__} {getattr(widget, 'text', '')!r} is off screen at {x:.0f},{y:.0f}")
        self._touch_id += 1
        touch = Touch("driver", self._touch_id, (x / w, y / h))
        self.loop.post_dispatch_input("begin", touch)
        self.pump(1)
        self.loop.post_dispatch_input("end", touch)
        self.pump(1)

    @staticmethod
    def _inside(widget, view) -> bool:
        wx, wy = widget.to_window(widget.x, widget.y)
        vx, vy = view.to_window(view.x, view.y)
        return vy <= wy and wy + widget.height <= vy + view.height

    def screenshot(self, path) -> str:
        """Save the window as PNG at exactly `path`."""
        import glob
        import shutil
        from pathlib import Path

        self.pump(2)
        tmp = tempfile.mkdtemp(prefix="shot-")
        self.window.screenshot(name=os.path.join(tmp, "shot.png"))
        made = glob.glob(os.path.join(tmp, "*.png"))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made[0], path)
        shutil.rmtree(tmp, ignore_errors=True)
        return str(path)


def visible_widgets(root):
    """Every widget drawn on screen under `root` (skips fully transparent and zero-size ones)."""
    stack = [root]
    while stack:
        w = stack.pop()
        if w.opacity <= 0 or w.width <= 0 or w.height <= 0:
            continue
        yield w
        stack.extend(w.children)


def size_violations(window) -> list[str]:
    """Touch targets under 48 dp, text under 16 sp, text cut short (a one-line label narrower than
    its words, or a shortened one with "..."), and widgets sticking out of the window."""
    from kivy.core.text import Label as CoreLabel
    from kivy.metrics import dp, sp
    from kivy.uix.behaviors import ButtonBehavior
    from kivy.uix.label import Label
    from kivy.uix.switch import Switch
    from kivy.uix.textinput import TextInput

    problems = []
    for root in window.children:
        for w in visible_widgets(root):
            name = f"{type(w).__name__}({getattr(w, 'text', '')[:30]!r})"
            if isinstance(w, (ButtonBehavior, TextInput, Switch)):
                if w.width < dp(48) - 0.5 or w.height < dp(48) - 0.5:
                    problems.append(f"touch target {name} is {w.width:.0f}x{w.height:.0f} px < 48 dp")
            if isinstance(w, (Label, TextInput)) and getattr(w, "text", "") and w.font_size < sp(16) - 0.01:
                problems.append(f"text {name} is {w.font_size:.1f} px < 16 sp")
            if isinstance(w, Label) and w.text and (w.shorten or w.text_size[0] is None):
                needed = CoreLabel(font_size=w.font_size, bold=w.bold, font_name=w.font_name).get_extents(w.text)[0]
                room = w.text_size[0] if w.text_size[0] is not None else w.width
                if needed > room + 1:
                    problems.append(f"text {name} is cut: needs {needed:.0f} px, has {room:.0f}")
            x0, y0 = w.to_window(w.x, w.y)
            if x0 < -1 or x0 + w.width > window.width + 1:
                problems.append(f"{name} sticks out of the window horizontally ({x0:.0f}..{x0 + w.width:.0f})")
    return problems
