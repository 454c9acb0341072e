"""Android picker through pyjnius: the system photo picker and the camera capture intent.

plyer's camera and file chooser are broken on current Android, so this talks to the platform
directly. Imported only on Android (it needs `jnius` and python-for-android's `android` module).

- Gallery: `MediaStore.ACTION_PICK_IMAGES` (Android 13+, and 11-12 with the SDK extension),
  falling back to `Intent.ACTION_GET_CONTENT` with `image/*`. No storage permission is needed.
- Camera: the CAMERA permission is requested at run time first (the manifest declares it, so
  Android refuses the capture intent without the grant), then `MediaStore.ACTION_IMAGE_CAPTURE`
  writes into a file in the app's private cache shared through our FileProvider
  (`<package>.fileprovider`, see `mobile_app/android/`), so the photo never enters the gallery.
- The chosen content is copied into the app's cache as a plain file: the edge client reads paths.
"""
from __future__ import annotations

import time
from pathlib import Path

from android import activity  # type: ignore[import-not-found]  # python-for-android only
from android.permissions import Permission, check_permission, request_permissions  # type: ignore[import-not-found]
from jnius import autoclass, cast  # type: ignore[import-not-found]
from kivy.clock import Clock

from .base import Callback, PhotoPicker, PickResult

PythonActivity = autoclass("org.kivy.android.PythonActivity")
Intent = autoclass("android.content.Intent")
MediaStore = autoclass("android.provider.MediaStore")
BuildVersion = autoclass("android.os.Build$VERSION")
FileUtils = autoclass("android.os.FileUtils")            # API 29+: buildozer.spec sets minapi 29
FileOutputStream = autoclass("java.io.FileOutputStream")
JavaFile = autoclass("java.io.File")
FileProvider = autoclass("androidx.core.content.FileProvider")

RESULT_OK = -1
REQUEST_PICK = 0x0D01
REQUEST_CAPTURE = 0x0D02


def _post(callback: Callback, result: PickResult) -> None:
    """Activity results arrive on Android's UI thread: hand them to Kivy's."""
    Clock.schedule_once(lambda _dt: callback(result), 0)


class AndroidPicker(PhotoPicker):
    """One pending request at a time; a new one replaces a forgotten one."""

    def __init__(self):
        self._pending: dict[int, tuple[Callback, Path | None]] = {}
        activity.bind(on_activity_result=self._on_activity_result)

    @property
    def has_camera(self) -> bool:
        pm = PythonActivity.mActivity.getPackageManager()
        return bool(pm.hasSystemFeature("android.hardware.camera.any"))

    def _cache_file(self, prefix: str) -> Path:
        cache = Path(PythonActivity.mActivity.getCacheDir().getAbsolutePath()) / "photos"
        cache.mkdir(parents=True, exist_ok=True)
        return cache / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.jpg"

    def pick_photo(self, callback: Callback) -> None:
        if BuildVersion.SDK_INT >= 33:  # the system photo picker
            intent = Intent(MediaStore.ACTION_PICK_IMAGES)
        else:  # Android 10-12: the document picker, still no storage permission needed
            intent = Intent(Intent.ACTION_GET_CONTENT)
            intent.addCategory(Intent.CATEGORY_OPENABLE)
        intent.setType("image/*")
        self._pending[REQUEST_PICK] = (callback, None)
        PythonActivity.mActivity.startActivityForResult(intent, REQUEST_PICK)

    def take_photo(self, callback: Callback) -> None:
        if check_permission(Permission.CAMERA):
            self._start_capture(callback)
            return

        def on_permissions(_perms, grants) -> None:
            if grants and all(grants):
                Clock.schedule_once(lambda _dt: self._start_capture(callback), 0)
            else:
                _post(callback, PickResult(error="camera permission was not granted"))

        request_permissions([Permission.CAMERA], on_permissions)

    def _start_capture(self, callback: Callback) -> None:
        target = self._cache_file("camera")
        ctx = PythonActivity.mActivity
        uri = FileProvider.getUriForFile(ctx, ctx.getPackageName() + ".fileprovider", JavaFile(str(target)))
        intent = Intent(MediaStore.ACTION_IMAGE_CAPTURE)
        intent.putExtra(MediaStore.EXTRA_OUTPUT, cast("android.os.Parcelable", uri))
        intent.addFlags(Intent.FLAG_GRANT_WRITE_URI_PERMISSION | Intent.FLAG_GRANT_READ_URI_PERMISSION)
        self._pending[REQUEST_CAPTURE] = (callback, target)
        try:
            ctx.startActivityForResult(intent, REQUEST_CAPTURE)
        except Exception as exc:  # ActivityNotFoundException: no camera app
            self._pending.pop(REQUEST_CAPTURE, None)
            _post(callback, PickResult(error=f"no camera app could take the photo ({exc})"))

    def _on_activity_result(self, request_code, result_code, intent) -> None:
        entry = self._pending.pop(request_code, None)
        if entry is None:
            return
        callback, target = entry
        if result_code != RESULT_OK:
            _post(callback, PickResult())
            return
        if request_code == REQUEST_CAPTURE:
            ok = target is not None and target.is_file() and target.stat().st_size > 0
            _post(callback, PickResult(path=target) if ok else PickResult(error="the camera returned no photo"))
            return
        uri = intent.getData() if intent is not None else None
        if uri is None:
            _post(callback, PickResult(error="the photo picker returned nothing"))
            return
        try:
            _post(callback, PickResult(path=self._copy_uri(uri)))
        except Exception as exc:
            _post(callback, PickResult(error=f"could not read the chosen photo ({exc})"))

    def _copy_uri(self, uri) -> Path:
        """Copy a content:// photo into the private cache and return the local path."""
        target = self._cache_file("picked")
        resolver = PythonActivity.mActivity.getContentResolver()
        stream = resolver.openInputStream(uri)
        out = FileOutputStream(str(target))
        try:
            FileUtils.copy(stream, out)
        finally:
            stream.close()
            out.close()
        return target
