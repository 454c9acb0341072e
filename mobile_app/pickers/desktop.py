"""Desktop picker: a Kivy file chooser in a popup (there is no camera on a desktop).

Photos are graded where they are (no copies); a labelled set may be a labels CSV in its photo
folder, or a zip of that folder (unpacked into the cache). Exports stay where they are written.
"""
from __future__ import annotations

from pathlib import Path

from kivy.clock import Clock
from kivy.metrics import dp, sp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.filechooser import FileChooserListView
from kivy.uix.popup import Popup

from .base import Callback, PhotoPicker, PickResult

IMAGE_PATTERNS = ["*.png", "*.jpg", "*.jpeg", "*.PNG", "*.JPG", "*.JPEG", "*.bmp", "*.tif", "*.tiff"]


class DesktopPicker(PhotoPicker):
    """Opens a file chooser rooted at the home folder (or `start_dir`)."""

    def __init__(self, start_dir: str | Path | None = None, cache_dir: str | Path | None = None):
        super().__init__(cache_dir)
        self.start_dir = str(start_dir or Path.home())

    def pick_photo(self, callback: Callback) -> None:
        self._choose("Choose a fundus photo", IMAGE_PATTERNS, callback)

    def pick_labels(self, callback: Callback) -> None:
        def unpack_zip(result: PickResult) -> None:
            if result.path is None or result.path.suffix.lower() != ".zip" or self.cache_dir is None:
                callback(result)
                return
            from ..labelset import LabelSetError, unpack
            try:
                callback(PickResult(path=unpack([result.path], self.cache_file("labelset", ""))))
            except (LabelSetError, OSError) as exc:
                callback(PickResult(error=str(exc)))

        self._choose("Choose the labels file (CSV) or a zip of its folder", ["*.csv", "*.CSV", "*.zip", "*.ZIP"],
                     unpack_zip)

    def _choose(self, title: str, patterns: list[str], callback: Callback) -> None:
        chooser = FileChooserListView(path=self.start_dir, filters=patterns)
        box = BoxLayout(orientation="vertical", spacing=dp(8))
        box.add_widget(chooser)
        row = BoxLayout(size_hint_y=None, height=dp(56), spacing=dp(8))
        ok = Button(text="OK", font_size=sp(18))
        cancel = Button(text="Cancel", font_size=sp(18))
        row.add_widget(cancel)
        row.add_widget(ok)
        box.add_widget(row)
        popup = Popup(title=title, content=box, size_hint=(0.95, 0.95),
                      title_size=sp(18), auto_dismiss=False)
        done = {"called": False}

        def finish(result: PickResult) -> None:
            if done["called"]:
                return
            done["called"] = True
            popup.dismiss()
            Clock.schedule_once(lambda _dt: callback(result), 0)

        def accept(*_args) -> None:
            if chooser.selection:
                self.start_dir = chooser.path
                finish(PickResult(path=Path(chooser.selection[0])))

        ok.bind(on_release=accept)
        chooser.bind(on_submit=lambda *_a: accept())
        cancel.bind(on_release=lambda *_a: finish(PickResult()))
        popup.open()

    def take_photo(self, callback: Callback) -> None:
        Clock.schedule_once(lambda _dt: callback(PickResult(error="no camera on this computer")), 0)
