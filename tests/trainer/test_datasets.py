"""Loading data sets (APTOS, EyePACS, folders), bad rows, splits by patient, and load_arrays."""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import trainer.data.arrays as arrays_mod
from edge_client.preprocess import PreprocessConfig
from trainer.data import (
    DatasetError,
    generate_dataset,
    load_arrays,
    load_dataset,
    one_per_patient,
    split_dataset,
)
from trainer.data.synth import render_fundus

CFG = PreprocessConfig(image_size=32)


def _save(path, grade=0, seed=0, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_fundus(grade, 32, np.random.default_rng(seed))).save(path, format=fmt)


def _eyepacs(root, patients=10, subfolder=False):
    folder = root / "train" if subfolder else root
    lines = ["image,level"]
    for p in range(patients):
        for eye in ("left", "right"):
            name = f"{100 + p}_{eye}"
            grade = p % 5
            _save(folder / f"{name}.jpeg", grade, p, "JPEG")
            lines.append(f"{name},{grade}")
    (root / "trainLabels.csv").write_text("\n".join(lines) + "\n")
    return root


def _huge_png(path):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_aptos_layout(tmp_path):
    root = generate_dataset(tmp_path / "aptos", 12, size=32, seed=0)
    ds = load_dataset(root)
    assert ds.layout == "aptos" and len(ds) == 12
    rows = (root / "train.csv").read_text().splitlines()[1:]
    assert [(s.sample_id, s.grade) for s in ds.samples] == [(r.split(",")[0], int(r.split(",")[1])) for r in rows]
    assert all(s.patient_id == s.sample_id and s.image_path.is_file() for s in ds.samples)


@pytest.mark.parametrize("subfolder", [False, True])
def test_eyepacs_groups_eyes_by_patient(tmp_path, subfolder):
    ds = load_dataset(_eyepacs(tmp_path, 10, subfolder))
    assert ds.layout == "eyepacs" and len(ds) == 20
    groups = ds.by_patient()
    assert len(groups) == 10 and all(len(g) == 2 for g in groups.values())
    assert {s.sample_id for s in groups["105"]} == {"105_left", "105_right"}
    one = one_per_patient(ds.samples, seed=1)
    assert len(one) == 10 and len({s.patient_id for s in one}) == 10
    assert one == ds.one_per_patient(seed=1)
    picks = {tuple(s.sample_id for s in one_per_patient(ds.samples, seed=k)) for k in range(6)}
    assert len(picks) > 1  # the seed chooses which eye


def test_eyepacs_split_never_separates_eyes(tmp_path):
    ds = load_dataset(_eyepacs(tmp_path, 25))
    for seed in range(5):
        parts = split_dataset(ds.samples, val_fraction=0.2, test_fraction=0.2, seed=seed)
        owner = {}
        for name, part in parts.items():
            for s in part:
                assert owner.setdefault(s.patient_id, name) == name
        assert sum(len(p) for p in parts.values()) == 50


def test_folder_per_grade_layout(tmp_path):
    for grade in range(5):
        for k in range(2):
            _save(tmp_path / str(grade) / f"img{grade}{k}.{'png' if k else 'jpg'}", grade, k)
    ds = load_dataset(tmp_path)
    assert ds.layout == "folders" and len(ds) == 10
    assert ds.grade_counts() == [2, 2, 2, 2, 2]
    assert all(s.grade == int(s.image_path.parent.name) and s.patient_id == s.sample_id for s in ds.samples)


def test_stratified_split_by_patient_is_seeded(tmp_path):
    ds = load_dataset(generate_dataset(tmp_path / "s", 200, size=16, seed=3))
    a = split_dataset(ds.samples, val_fraction=0.1, test_fraction=0.2, seed=0)
    b = split_dataset(ds.samples, val_fraction=0.1, test_fraction=0.2, seed=0)
    c = split_dataset(ds.samples, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert a == b and a["test"] != c["test"]
    ids = {k: {s.sample_id for s in v} for k, v in a.items()}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert sum(map(len, ids.values())) == 200
    assert 30 <= len(ids["test"]) <= 50 and 12 <= len(ids["val"]) <= 28
    # stratified: grade 0's share of the test split is close to its share overall
    share = np.mean([s.grade == 0 for s in a["test"]])
    assert abs(share - np.mean([s.grade == 0 for s in ds.samples])) < 0.1
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction"):
        split_dataset(ds.samples, val_fraction=0.5, test_fraction=0.5)


def test_split_file_fixes_the_split(tmp_path):
    ds = load_dataset(_eyepacs(tmp_path / "e", 3))
    good = tmp_path / "split.csv"
    good.write_text("id_code,split\n100_left,train\n100_right,train\n101_left,val\n101_right,val\n"
                    "102_left,test\n102_right,test\n")
    parts = split_dataset(ds.samples, split_file=good)
    assert [s.sample_id for s in parts["val"]] == ["101_left", "101_right"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id_code,split\n100_left,train\n100_right,test\n101_left,val\n101_right,holdout\n"
                   "999_left,train\n")
    with pytest.raises(DatasetError) as err:
        split_dataset(ds.samples, split_file=bad)
    msg = str(err.value)
    assert "bad.csv row 5: split 'holdout'" in msg
    with pytest.raises(DatasetError) as err:
        bad.write_text("id_code,split\n100_left,train\n100_right,test\n101_left,val\n999_left,train\n")
        split_dataset(ds.samples, split_file=bad)
    msg = str(err.value)
    assert "'101_right'" in msg and "has no split" in msg and "'102_left'" in msg
    assert "'999_left' is not in the data set" in msg
    assert "patient '100' is split across" in msg


def test_every_bad_row_is_reported_at_once(tmp_path):
    root = generate_dataset(tmp_path / "s", 4, size=32, seed=0)
    ids = [line.split(",")[0] for line in (root / "train.csv").read_text().splitlines()[1:]]
    images = root / "train_images"
    Image.new("L", (32, 32), 90).save(images / "gray.png")
    (images / "text.png").write_text("hello, I am not an image\n")
    _huge_png(images / "huge.png")
    rows = ["id_code,diagnosis", f"{ids[0]},0", f"{ids[1]},7", f"{ids[2]},two", f"{ids[3]},1.5", f"{ids[0]},0",
            "nofile,1", "gray,2", "text,3", "huge,4", ",1"]
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    lines = err.value.problems
    assert len(lines) == 9, lines
    text = "\n".join(lines)
    for expected in ("train.csv row 3: grade 7 is outside 0-4", "train.csv row 4: grade 'two' is not an integer",
                     "train.csv row 5: grade '1.5' is not an integer",
                     f"train.csv row 6: duplicated id_code '{ids[0]}' (first on row 2)",
                     "train.csv row 7: image file not found", "train.csv row 8:", "single-channel",
                     "train.csv row 9:", "not a readable image", "train.csv row 10:", "over the cap",
                     "train.csv row 11: empty id_code"):
        assert expected in text, expected
    assert "gray.png" in text and "text.png" in text and "huge.png" in text


def test_wrong_columns_and_unknown_layout(tmp_path):
    (tmp_path / "train.csv").write_text("image,grade\na,1\n")
    with pytest.raises(DatasetError, match=r"train\.csv: wrong columns \['image', 'grade'\].*id_code"):
        load_dataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no train.csv"):
        load_dataset(empty)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nowhere")


def test_folders_bad_files_reported(tmp_path):
    _save(tmp_path / "0" / "a.png")
    _save(tmp_path / "2" / "a.jpg", 2, 1, "JPEG")
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "readme.txt").write_text("x")
    (tmp_path / "7").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    text = str(err.value)
    assert "duplicated id 'a'" in text and "readme.txt: not an image file" in text
    assert "7: folder name is not a grade 0-4" in text


def test_load_arrays_shapes_patients_and_decode_errors(tmp_path):
    ds = load_dataset(_eyepacs(tmp_path / "e", 4))
    x, y, patient = load_arrays(ds.samples, CFG)
    assert x.shape == (8, 3, 32, 32) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.tolist() == [s.grade for s in ds.samples]
    assert patient.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # a truncated file passes the header check at load time and fails, named, when decoded
    path = ds.samples[3].image_path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    ds2 = load_dataset(tmp_path / "e")
    with pytest.raises(DatasetError, match=r"sample '101_right': .*101_right\.jpeg.*truncated"):
        load_arrays(ds2.samples, CFG)


def test_load_arrays_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    root = generate_dataset(tmp_path / "s", 6, size=32, seed=0)
    samples = load_dataset(root).samples
    cache = root / ".cache"
    x1, _, _ = load_arrays(samples, CFG, cache_dir=cache)
    assert len(list(cache.glob("arrays-*.npy"))) == 1
    calls = []
    real = arrays_mod.preprocess_image
    monkeypatch.setattr(arrays_mod, "preprocess_image", lambda *a: calls.append(1) or real(*a))
    x2, _, _ = load_arrays(samples, CFG, cache_dir=cache)
    assert calls == [] and np.array_equal(x1, x2)  # served from the cache
    path = samples[0].image_path
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 120).save(path)
    os.utime(path, ns=(1, 1))
    x3, _, _ = load_arrays(samples, CFG, cache_dir=cache)
    assert len(calls) == 6 and not np.array_equal(x1[0], x3[0])  # the changed file is re-read


def test_augment_trains_only_and_is_seeded():
    import torch

    from trainer.data.augment import Augment

    x = torch.from_numpy(np.stack([load_image_array(seed) for seed in range(4)]))
    aug = Augment(CFG)
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    black = (0 - torch.tensor(CFG.mean)) / torch.tensor(CFG.std)
    assert torch.allclose(a[:, :, 0, 0], black.expand(4, 3), atol=0.2)  # the border stays (near) black
    aug.eval()
    assert aug(x) is x  # evaluation never sees augmented images


def load_image_array(seed):
    from edge_client.preprocess import preprocess_image

    return preprocess_image(render_fundus(1, 32, np.random.default_rng(seed)), CFG)


def test_row_numbers_are_file_lines(tmp_path):
    root = generate_dataset(tmp_path / "s", 2, size=32, seed=0)
    ids = [line.split(",")[0] for line in (root / "train.csv").read_text().splitlines()[1:]]
    (root / "train.csv").write_text(f"id_code,diagnosis\n{ids[0]},0\n\n{ids[1]},9\n")
    with pytest.raises(DatasetError, match="train.csv row 4: grade 9 is outside 0-4"):
        load_dataset(root)
