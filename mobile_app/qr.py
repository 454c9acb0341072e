"""Read the text of a QR code in a photo (the publisher key a supervisor shows on paper or a screen).

Two decoders of the same family (ZXing), one per platform, both real libraries:
- Android: ZXing's Java core (`com.google.zxing:core`, a gradle dependency in buildozer.spec)
  through pyjnius, on the photo the camera app wrote into the app's cache;
- desktop (and the tests): `zxing-cpp`'s Python binding (requirements.txt).
iOS has neither here (no kivy-ios recipe for zxing-cpp): `can_decode()` is False there and the
app offers pasting the key instead. Pure Python apart from the decoders: no Kivy.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["QRError", "QRNotFound", "QRUnavailable", "can_decode", "decode_qr"]


class QRError(Exception):
    """The photo could not be read as a QR code (subclasses say why)."""


class QRUnavailable(QRError):
    """No QR decoder on this device."""


class QRNotFound(QRError):
    """The photo was read but holds no QR code the decoder could find."""


def _platform() -> str:
    from edge_client.runtimes import current_platform   # what the app passed from kivy.utils.platform
    return current_platform()


def can_decode() -> bool:
    """Whether this device has a QR decoder."""
    if _platform() == "android":
        return True               # ZXing's Java core ships in the APK (buildozer.spec)
    if _platform() == "ios":
        return False
    try:
        import zxingcpp  # noqa: F401
    except ImportError:
        return False
    return True


def decode_qr(photo: str | Path) -> str:
    """The text of the first QR code found in a photo.

    Raises:
        QRUnavailable: no decoder here. QRNotFound: no QR code in the photo.
        OSError: the photo cannot be read.
    """
    if _platform() == "android":
        return _decode_android(Path(photo))
    if not can_decode():
        raise QRUnavailable("no QR decoder on this device")
    return _decode_zxingcpp(Path(photo))


def _decode_zxingcpp(photo: Path) -> str:
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(photo) as img:
            img.draft("RGB", (2000, 2000))          # a 12 MP camera JPEG decodes at ~2000 px
            rgb = img.convert("RGB")
    except UnidentifiedImageError:
        raise QRNotFound(f"{photo.name} is not a photo") from None
    codes = [c for c in zxingcpp.read_barcodes(rgb) if c.format == zxingcpp.BarcodeFormat.QRCode and c.valid]
    if not codes:
        raise QRNotFound(f"no QR code found in {photo.name}")
    return codes[0].text


def _decode_android(photo: Path) -> str:   # pragma: no cover - runs only on Android
    from jnius import autoclass, JavaException  # type: ignore[import-not-found]

    BitmapFactory = autoclass("android.graphics.BitmapFactory")
    Options = autoclass("android.graphics.BitmapFactory$Options")
    opts = Options()
    opts.inSampleSize = 2                      # camera photos are large; QR modules stay sharp
    bitmap = BitmapFactory.decodeFile(str(photo), opts)
    if bitmap is None:
        raise QRNotFound(f"{photo.name} is not a photo")
    width, height = bitmap.getWidth(), bitmap.getHeight()
    pixels = [0] * (width * height)
    bitmap.getPixels(pixels, 0, width, 0, 0, width, height)
    source = autoclass("com.google.zxing.RGBLuminanceSource")(width, height, pixels)
    binary = autoclass("com.google.zxing.BinaryBitmap")(autoclass("com.google.zxing.common.HybridBinarizer")(source))
    try:
        return autoclass("com.google.zxing.qrcode.QRCodeReader")().decode(binary).getText()
    except JavaException:
        raise QRNotFound(f"no QR code found in {photo.name}") from None
