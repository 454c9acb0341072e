"""A labelled set as a phone's document picker hands it over: a zip, or a CSV with its photos."""
import zipfile

import pytest

from mobile_app.labelset import LabelSetError, unpack



def test_a_zip_of_the_folder_becomes_a_labels_csv_with_its_photos(tmp_path):
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as zf:
        zf.writestr("clinic/labels.csv", "image,grade\nimg/a.png,0\n")
        zf.writestr("clinic/img/a.png", b"png")
    labels = unpack([tmp_path / "set.zip"], tmp_path / "out")
    assert labels == tmp_path / "out" / "clinic" / "labels.csv"
    assert (labels.parent / "img" / "a.png").read_bytes() == b"png"


@pytest.mark.parametrize("member", ["../evil.png", "/etc/evil.png", "c:evil.png"])
def test_a_zip_member_leaving_the_folder_is_refused(tmp_path, member):
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as zf:
        zf.writestr("labels.csv", "image,grade\n")
        zf.writestr(member, b"x")
    with pytest.raises(LabelSetError, match="outside its folder"):
        unpack([tmp_path / "set.zip"], tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()


def test_a_csv_chosen_with_its_photos_puts_each_photo_where_the_csv_says(tmp_path):
    (tmp_path / "labels.csv").write_text("image,grade\ntrain_images/a.png,1\ntrain_images/b.png,0\n")
    (tmp_path / "a.png").write_bytes(b"A")
    labels = unpack([tmp_path / "labels.csv", tmp_path / "a.png"], tmp_path / "out")
    assert (labels.parent / "train_images" / "a.png").read_bytes() == b"A"
    assert not (labels.parent / "train_images" / "b.png").exists()     # reported per row by the edge client


@pytest.mark.parametrize("names,match", [([], "choose one .zip"), (["a.png"], "choose one .zip"),
                                         (["x.csv", "y.csv"], "choose one .zip")])
def test_nothing_usable_says_what_to_choose(tmp_path, names, match):
    for n in names:
        (tmp_path / n).write_text("image,grade\n")
    with pytest.raises(LabelSetError, match=match):
        unpack([tmp_path / n for n in names], tmp_path / "out")


def test_a_zip_without_labels_or_not_a_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as zf:
        zf.writestr("a.png", b"x")
    with pytest.raises(LabelSetError, match="no labels.csv"):
        unpack([tmp_path / "set.zip"], tmp_path / "out")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(LabelSetError, match="not a readable zip"):
        unpack([tmp_path / "bad.zip"], tmp_path / "out2")
