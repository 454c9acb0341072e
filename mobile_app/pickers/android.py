"""Android picker through pyjnius: photo picker, camera, document picker for labelled sets, share sheet.

plyer's camera and file chooser are broken on current Android, so this talks to the platform
directly. Imported only on Android (it needs `jnius` and python-for-android's `android` module);
not run here (no Android): written against the Android API reference, see docs/MOBILE.md.

- Gallery: `MediaStore.ACTION_PICK_IMAGES` (Android 13+), else `ACTION_GET_CONTENT` with
  `image/*`. No storage permission is needed.
- Camera: the CAMERA permission is requested at run time first, then `ACTION_IMAGE_CAPTURE`
  writes into the app's private cache through our FileProvider (`<package>.fileprovider`,
  declared by mobile_app/android/p4a_hook.py), so the photo never enters the gallery. The
  manifest declares the camera optional (`uses-feature ... required="false"`): tablets
  without one still install the app, and the button is disabled there.
- Labelled sets: `ACTION_OPEN_DOCUMENT` (zip, or a CSV with its photos, several at once);
  the documents are copied into the cache and laid out by `mobile_app.labelset.unpack`.
- Export: `ACTION_SEND` of the CSV in cache/exports/ through the FileProvider, in a chooser.
- Chosen photos are copied into cache/photos/ as plain files (the edge client reads paths) and
  deleted by the app once graded (`release`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from android import activity  # type: ignore[import-not-found]  # python-for-android only
from android.permissions import Permission, check_permission, request_permissions  # type: ignore[import-not-found]
from jnius import autoclass, cast  # type: ignore[import-not-found]
from kivy.clock import Clock

from ..labelset import LabelSetError, unpack
from .base import Callback, PhotoPicker, PickResult, ShareCallback, ShareResult

PythonActivity = autoclass("org.kivy.android.PythonActivity")
Intent = autoclass("android.content.Intent")
MediaStore = autoclass("android.provider.MediaStore")
OpenableColumns = autoclass("android.provider.OpenableColumns")
BuildVersion = autoclass("android.os.Build$VERSION")
FileUtils = autoclass("android.os.FileUtils")            # API 29+: buildozer.spec sets minapi 29
FileOutputStream = autoclass("java.io.FileOutputStream")
JavaFile = autoclass("java.io.File")
JavaString = autoclass("java.lang.String")
FileProvider = autoclass("androidx.core.content.FileProvider")

RESULT_OK = -1
REQUEST_PICK = 0x0D01
REQUEST_CAPTURE = 0x0D02
REQUEST_LABELS = 0x0D03
LABEL_TYPES = ["text/csv", "text/comma-separated-values", "text/plain", "application/zip", "image/*"]


def _post(callback, result) -> None:
    """Activity results arrive on Android's UI thread: hand them to Kivy's."""
    Clock.schedule_once(lambda _dt: callback(result), 0)


def _cache() -> Path:
    return Path(PythonActivity.mActivity.getCacheDir().getAbsolutePath())


class AndroidPicker(PhotoPicker):
    """One pending request per kind; a new one replaces a forgotten one."""

    def __init__(self):
        super().__init__(_cache() / "photos")            # the FileProvider shares only this and exports/
        self._pending: dict[int, tuple] = {}
        activity.bind(on_activity_result=self._on_activity_result)

    @property
    def has_camera(self) -> bool:
        ctx = PythonActivity.mActivity
        if not ctx.getPackageManager().hasSystemFeature("android.hardware.camera.any"):
            return False
        # a camera app to hand the capture to (visible through the manifest's <queries>)
        return Intent(MediaStore.ACTION_IMAGE_CAPTURE).resolveActivity(ctx.getPackageManager()) is not None

    def export_dir(self, default: Path) -> Path:
        return _cache() / "exports"

    # ---- photos -------------------------------------------------------------------------------
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
        target = self.cache_file("camera")
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

    # ---- labelled sets ------------------------------------------------------------------------
    def pick_labels(self, callback: Callback) -> None:
        intent = Intent(Intent.ACTION_OPEN_DOCUMENT)
        intent.addCategory(Intent.CATEGORY_OPENABLE)
        intent.setType("*/*")
        intent.putExtra(Intent.EXTRA_MIME_TYPES, [JavaString(t) for t in LABEL_TYPES])
        intent.putExtra(Intent.EXTRA_ALLOW_MULTIPLE, True)
        self._pending[REQUEST_LABELS] = (callback, None)
        PythonActivity.mActivity.startActivityForResult(intent, REQUEST_LABELS)

    def _labels_from(self, intent) -> PickResult:
        uris = []
        clip = intent.getClipData()
        if clip is not None:
            uris = [clip.getItemAt(i).getUri() for i in range(clip.getItemCount())]
        elif intent.getData() is not None:
            uris = [intent.getData()]
        if not uris:
            return PickResult(error="the document picker returned nothing")
        sets = _cache() / "labelsets"
        shutil.rmtree(sets, ignore_errors=True)           # only the newest set stays on the device
        incoming = sets / "incoming"
        incoming.mkdir(parents=True)
        files = [self._copy_uri(uri, incoming / self._display_name(uri, i)) for i, uri in enumerate(uris)]
        try:
            return PickResult(path=unpack(files, sets / "set"))
        except LabelSetError as exc:
            return PickResult(error=str(exc))
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    @staticmethod
    def _display_name(uri, index: int) -> str:
        cursor = PythonActivity.mActivity.getContentResolver().query(uri, None, None, None, None)
        name = ""
        if cursor is not None:
            try:
                if cursor.moveToFirst():
                    name = cursor.getString(cursor.getColumnIndex(OpenableColumns.DISPLAY_NAME)) or ""
            finally:
                cursor.close()
        name = Path(name.replace("\\", "/")).name          # never a path from another app
        return name if name and not name.startswith(".") else f"document-{index}"

    # ---- results ------------------------------------------------------------------------------
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
        if intent is None:
            _post(callback, PickResult(error="the picker returned nothing"))
            return
        try:
            if request_code == REQUEST_LABELS:
                _post(callback, self._labels_from(intent))
                return
            uri = intent.getData()
            if uri is None:
                _post(callback, PickResult(error="the photo picker returned nothing"))
                return
            _post(callback, PickResult(path=self._copy_uri(uri, self.cache_file("picked"))))
        except Exception as exc:
            _post(callback, PickResult(error=f"could not read the chosen file ({exc})"))

    @staticmethod
    def _copy_uri(uri, target: Path) -> Path:
        """Copy a content:// document into a plain file and return its path."""
        resolver = PythonActivity.mActivity.getContentResolver()
        stream = resolver.openInputStream(uri)
        out = FileOutputStream(str(target))
        try:
            FileUtils.copy(stream, out)
        finally:
            stream.close()
            out.close()
        return target

    # ---- export -------------------------------------------------------------------------------
    def share_file(self, path, mime: str, callback: ShareCallback) -> None:
        ctx = PythonActivity.mActivity
        try:
            uri = FileProvider.getUriForFile(ctx, ctx.getPackageName() + ".fileprovider", JavaFile(str(path)))
            send = Intent(Intent.ACTION_SEND)
            send.setType(mime)
            send.putExtra(Intent.EXTRA_STREAM, cast("android.os.Parcelable", uri))
            send.addFlags(Intent.FLAG_GRANT_READ_URI_PERMISSION)
            ctx.startActivity(Intent.createChooser(send, JavaString(Path(path).name)))
        except Exception as exc:
            _post(callback, ShareResult(error=f"the share sheet could not open ({exc})"))
            return
        _post(callback, ShareResult(shared=True))
