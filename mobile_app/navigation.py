"""The bottom navigation bar and the back button.

Tabs carry an icon and their full label; each tab is as wide as its label needs (plus an equal
share of what is left), which fits five tabs in 360 dp in English, French and Swahili without
cutting a word. Android's back button (Kivy key 27) closes an open dialog, else goes back to the
screen before, else to Home; on Home it sends the app to the background, as Android apps do.
"""
from __future__ import annotations

from collections.abc import Callable

from kivy.factory import Factory
from kivy.metrics import dp
from kivy.uix.dropdown import DropDown
from kivy.uix.modalview import ModalView

BACK_KEY = 27          # Android's back button and Escape on a desktop
MAX_HISTORY = 20


class Navigator:
    """Owns the nav bar's tabs and the stack of visited screens.

    Args:
        bar: the BoxLayout holding the tabs. show: shows a screen by name (the app's).
        translate: key -> text in the current language.
    """

    def __init__(self, bar, show: Callable[[str], None], translate: Callable[[str], str]):
        self.bar = bar
        self._show = show
        self._tr = translate
        self.names: list[str] = []
        self.current = ""
        self.history: list[str] = []
        bar.bind(width=lambda *_a: self._size_tabs())

    def build(self, names: list[str]) -> None:
        """(Re)build the tabs for `names` (in the current language)."""
        self.names = list(names)
        self.bar.clear_widgets()
        for name in self.names:
            tab = Factory.NavTab(text=self._tr(f"nav.{name}"), screen=name, icon=name,
                                 state="down" if name == self.current else "normal")
            tab.ids.label.bind(texture_size=lambda *_a: self._size_tabs())
            tab.bind(on_release=lambda t: self.go(t.screen))
            self.bar.add_widget(tab)
        self.history = [n for n in self.history if n in self.names]
        if self.current and self.current not in self.names:
            self.go("home", remember=False)

    def _size_tabs(self) -> None:
        """Each tab's share of the bar: what its label needs, or an equal share when that is more
        (a tablet's tabs are all the same width; a phone's narrow labels give room to long ones)."""
        tabs = self.bar.children
        if not tabs:
            return
        equal = self.bar.width / len(tabs)
        for tab in tabs:
            tab.size_hint_x = max(tab.ids.label.texture_size[0] + dp(12), equal)

    def tabs(self) -> list:
        """The tab widgets, left to right."""
        return list(reversed(self.bar.children))

    def go(self, name: str, *, remember: bool = True) -> None:
        """Show `name`; the screen left behind is where back returns to."""
        if remember and self.current and self.current != name:
            self.history.append(self.current)
            del self.history[:-MAX_HISTORY]
        self.current = name
        self._show(name)
        for tab in self.bar.children:
            tab.state = "down" if tab.screen == name else "normal"

    def back(self) -> bool:
        """One step back. Returns False only when nothing is left to go back to (the caller then
        lets the platform handle the key)."""
        from kivy.core.window import Window

        for child in list(Window.children):           # an open dialog or list closes first
            if isinstance(child, ModalView):
                child.dismiss()
                return True
            if isinstance(child, DropDown):
                child.dismiss()
                return True
        while self.history:
            name = self.history.pop()
            if name in self.names and name != self.current:
                self.go(name, remember=False)
                return True
        if self.current != "home":
            self.go("home", remember=False)
            return True
        return False

    def on_key(self, _window, key, *_args) -> bool:
        """Window.on_keyboard handler: True when the key was used."""
        if key != BACK_KEY:
            return False
        if self.back():
            return True
        return _to_background()


def _to_background() -> bool:
    """On Android, Home + back hides the app like other apps do; elsewhere Kivy decides (False)."""
    from kivy.utils import platform

    if platform != "android":
        return False
    try:                                              # pragma: no cover - Android only
        from jnius import autoclass  # type: ignore[import-not-found]

        autoclass("org.kivy.android.PythonActivity").mActivity.moveTaskToBack(True)
        return True
    except Exception:
        return False
