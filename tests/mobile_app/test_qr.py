"""Reading the publisher key from a photographed QR code (desktop decoder: zxing-cpp).

The photos are real ones that scikit-image ships (an astronaut's portrait, a coffee cup, a
camera man) with a printed-looking QR code laid on at an angle, blurred and JPEG-compressed as
a phone camera would; the same photos without a code must give "no QR code", never a key."""
import io

import pytest
from PIL import Image, ImageFilter

from edge_client.runtimes import set_platform
from mobile_app import qr
from mobile_app.provision import encode_key, parse_key

skdata = pytest.importorskip("skimage.data")
KEY = encode_key(bytes(range(7, 39)))
PHOTOS = {"astronaut": skdata.astronaut, "coffee": skdata.coffee, "camera": skdata.camera}


def photo(name: str) -> Image.Image:
    return Image.fromarray(PHOTOS[name]()).convert("RGB")


def camera_shot(background: Image.Image, text: str, path, *, angle: float, size: int) -> None:
    """A QR code on paper, photographed: rotated, slightly out of focus, JPEG."""
    import qrcode

    code = qrcode.make(text, border=2).convert("RGB").resize((size, size), Image.NEAREST)
    code = code.rotate(angle, expand=True, fillcolor=(255, 255, 255))
    shot = background.copy()
    shot.paste(code, ((shot.width - code.width) // 2, (shot.height - code.height) // 2))
    buffer = io.BytesIO()
    shot.filter(ImageFilter.GaussianBlur(1.0)).save(buffer, "JPEG", quality=60)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("name,angle", [("astronaut", 12), ("coffee", -8), ("camera", 30)])
def test_a_photographed_key_is_read(tmp_path, name, angle):
    shot = tmp_path / f"{name}.jpg"
    camera_shot(photo(name), KEY, shot, angle=angle, size=220)
    assert qr.can_decode()
    text = qr.decode_qr(shot)
    assert parse_key(text) == parse_key(KEY)


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_a_photo_without_a_code_gives_no_key(tmp_path, name):
    shot = tmp_path / f"{name}.jpg"
    photo(name).save(shot, "JPEG", quality=85)
    with pytest.raises(qr.QRNotFound):
        qr.decode_qr(shot)


def test_not_a_photo(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not an image at all")
    with pytest.raises(qr.QRNotFound, match="not a photo"):
        qr.decode_qr(tmp_path / "x.jpg")


def test_no_decoder_on_ios():
    set_platform("ios")
    try:
        assert not qr.can_decode()
        with pytest.raises(qr.QRUnavailable):
            qr.decode_qr("anything.jpg")
    finally:
        set_platform(None)
