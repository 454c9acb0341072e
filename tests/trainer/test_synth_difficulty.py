"""The generator's difficulty: the default reproduces the images made before it existed, bit for
bit; a higher difficulty fades the lesions and nothing else; bad values are refused by name."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from trainer.cli import main as trainer_main
from trainer.data.synth import generate_dataset, render_fundus

# Pixels, train.csv and synth.json of sets written by the generator before `difficulty` existed
# (commit b8ef244), hashed by _digest: the default must keep them exactly.
BEFORE = {(12, 32, 3): "78076cc69507f825248934fe352b1e53b3850e105f4a33c9b9a3a610cd5b02a7",
          (6, 64, 4): "3cf37b4ed9e9dcac2a851f4efe786e9afbfa55340aa1edf1850235f8a696a42d"}


def _digest(root) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(np.asarray(Image.open(path)).tobytes() if path.suffix == ".png" else path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("n,size,seed", sorted(BEFORE))
def test_default_difficulty_reproduces_the_images_made_before_it(tmp_path, n, size, seed):
    assert _digest(generate_dataset(tmp_path / "d", n, size=size, seed=seed)) == BEFORE[(n, size, seed)]
    assert _digest(generate_dataset(tmp_path / "e", n, size=size, seed=seed, difficulty=0.0)) == BEFORE[(n, size, seed)]


def test_difficulty_fades_lesions_not_the_fundus():
    def diff(grade: int) -> float:
        easy = render_fundus(grade, 64, np.random.default_rng([4, grade])).astype(float)
        hard = render_fundus(grade, 64, np.random.default_rng([4, grade]), difficulty=1.0).astype(float)
        return float(np.abs(easy - hard).mean())
    # grade 0 at this seed draws no lesion: identical; grade 4 is full of them: clearly changed
    assert diff(0) == 0.0
    assert diff(4) > 1.0  # mean over the whole image; the lesions cover a small part of it
    half = render_fundus(4, 64, np.random.default_rng([4, 4]), difficulty=0.5).astype(float)
    easy = render_fundus(4, 64, np.random.default_rng([4, 4])).astype(float)
    assert 0 < np.abs(half - easy).mean() < diff(4)


def test_cli_records_difficulty_and_refuses_bad_values(tmp_path, capsys):
    out = tmp_path / "hard"
    assert trainer_main(["synth", "--out", str(out), "--n", "4", "--size", "32", "--difficulty", "0.5"]) == 0
    assert json.loads((out / "synth.json").read_text())["difficulty"] == 0.5
    for bad in ("1.5", "-0.1", "nan"):
        assert trainer_main(["synth", "--out", str(tmp_path / f"b{bad}"), "--n", "4", "--size", "32",
                             "--difficulty", bad]) == 2
        err = capsys.readouterr().err
        assert "--difficulty must be a number in [0, 1]" in err and "Traceback" not in err
        assert not (tmp_path / f"b{bad}" / "train.csv").exists()
