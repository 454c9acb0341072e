"""iOS picker through pyobjus, following kivy-ios's conventions (as plyer's iOS file chooser does):
`UIImagePickerController` for the photo library and the camera, its delegate methods declared
with pyobjus's `@protocol`, and kivy-ios's `NativeImagePicker.writeToPNG:` to turn the chosen
UIImage into a file; `UIActivityViewController` is the share sheet for exports.

Imported only on iOS (`kivy.utils.platform == "ios"`); not run here (no Mac, no iPhone): written
against Apple's UIKit reference and plyer's working iOS code, see docs/MOBILE.md. Choosing a
labelled set is not offered on iOS (the base class says so), nor scanning a key (no QR decoder
in kivy-ios: paste it).

Info.plist needs NSCameraUsageDescription and NSPhotoLibraryUsageDescription (MOBILE.md).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from kivy.clock import Clock
from pyobjus import autoclass, objc_str, protocol  # type: ignore[import-not-found]  # kivy-ios only
from pyobjus.dylib_manager import load_framework  # type: ignore[import-not-found]

from .base import Callback, PhotoPicker, PickResult, ShareCallback, ShareResult

load_framework("/System/Library/Frameworks/UIKit.framework")

SOURCE_LIBRARY = 0        # UIImagePickerControllerSourceTypePhotoLibrary
SOURCE_CAMERA = 1         # UIImagePickerControllerSourceTypeCamera


def _root_controller():
    return autoclass("UIApplication").sharedApplication().keyWindow.rootViewController()


class IOSPicker(PhotoPicker):
    """The system image picker; its delegate is this object (pyobjus `@protocol` methods)."""

    def __init__(self):
        caches = Path.home() / "Library" / "Caches" / "dopamine"
        super().__init__(caches / "photos")
        self._callback: Callback | None = None

    @property
    def has_camera(self) -> bool:
        return bool(autoclass("UIImagePickerController").isSourceTypeAvailable_(SOURCE_CAMERA))

    def export_dir(self, default: Path) -> Path:
        return Path.home() / "Library" / "Caches" / "dopamine" / "exports"

    def pick_photo(self, callback: Callback) -> None:
        self._present(SOURCE_LIBRARY, callback)

    def take_photo(self, callback: Callback) -> None:
        if not self.has_camera:
            Clock.schedule_once(lambda _dt: callback(PickResult(error="this device has no camera")), 0)
            return
        self._present(SOURCE_CAMERA, callback)

    def _present(self, source: int, callback: Callback) -> None:
        self._callback = callback
        picker = autoclass("UIImagePickerController").alloc().init()
        picker.sourceType = source
        picker.delegate = self
        _root_controller().presentViewController_animated_completion_(picker, True, None)

    def _finish(self, result: PickResult) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            Clock.schedule_once(lambda _dt: callback(result), 0)

    @protocol("UIImagePickerControllerDelegate")
    def imagePickerController_didFinishPickingMediaWithInfo_(self, image_picker, info):
        image_picker.dismissViewControllerAnimated_completion_(True, None)
        try:
            written = autoclass("NativeImagePicker").alloc().init().writeToPNG_(info).UTF8String()
            target = self.cache_file("picked", ".png")
            shutil.move(written, target)        # into our cache, deleted once graded
            self._finish(PickResult(path=target))
        except Exception as exc:
            self._finish(PickResult(error=f"could not read the chosen photo ({exc})"))

    @protocol("UIImagePickerControllerDelegate")
    def imagePickerControllerDidCancel_(self, image_picker):
        image_picker.dismissViewControllerAnimated_completion_(True, None)
        self._finish(PickResult())

    def share_file(self, path, mime: str, callback: ShareCallback) -> None:
        try:
            url = autoclass("NSURL").fileURLWithPath_(objc_str(str(path)))
            items = autoclass("NSMutableArray").alloc().init()
            items.addObject_(url)
            sheet = autoclass("UIActivityViewController").alloc().initWithActivityItems_applicationActivities_(
                items, None)
            root = _root_controller()
            popover = sheet.popoverPresentationController()
            if popover is not None:                    # an iPad shows the sheet as a popover
                popover.sourceView = root.view()
            root.presentViewController_animated_completion_(sheet, True, None)
        except Exception as exc:
            failed = ShareResult(error=f"the share sheet could not open ({exc})")   # now: exc is gone later
            Clock.schedule_once(lambda _dt: callback(failed), 0)
            return
        Clock.schedule_once(lambda _dt: callback(ShareResult(shared=True)), 0)
