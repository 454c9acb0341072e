"""trainer.reports: figures are real, legible PNGs written atomically; tables and cards tell the truth."""
import math
import random

import numpy as np
import pytest
from PIL import Image

from edge_client.privacy_figures import round_up
from trainer.model_card import write_model_card
from trainer.reports import (best_on_validation, compare_table_md, write_compare_png, write_confusion_png,
                             write_curves_png)

CLASSES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]


def _rows(n=12, *, private=True, peak_val=5):
    """Fake metrics.jsonl rows; val peaks at round `peak_val`, test keeps rising."""
    rows = []
    for r in range(1, n + 1):
        rows.append({"round": r, "epoch": r * 0.5, "loss": 1.6 / r,
                     "val_accuracy": 0.7 - 0.02 * abs(r - peak_val),
                     "test_accuracy": 0.4 + 0.03 * r, "val_kappa": 0.5, "test_kappa": 0.3 + 0.01 * r,
                     "epsilon": 0.8 * math.sqrt(r) if private else None})
    return rows


def _assert_real_png(path):
    assert path.is_file() and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 2  # not a blank canvas
    # Atomic: the temp file beside it is gone.
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others, unlike mkstemp's 0600


def test_confusion_png(tmp_path):
    confusion = np.array([[50, 3, 1, 0, 0], [4, 9, 2, 0, 0], [2, 3, 20, 2, 1],
                          [0, 0, 2, 4, 1], [0, 0, 0, 0, 0]])  # grade 4 absent: row of zeros
    path = write_confusion_png(confusion, CLASSES, tmp_path / "out" / "confusion.png",
                               title="dopamine, test, round 5")
    _assert_real_png(path)


def test_curves_png_private_and_not(tmp_path):
    _assert_real_png(write_curves_png(_rows(), tmp_path / "a" / "curves.png", title="dopamine"))
    _assert_real_png(write_curves_png(_rows(private=False), tmp_path / "b" / "curves.png",
                                      title="fedavg"))


def test_compare_png(tmp_path):
    runs = {}
    for k, mode in enumerate(("central", "central-dp", "fedavg", "fl-parallel-dp", "dopamine")):
        runs[mode] = _rows(private=mode in ("central-dp", "fl-parallel-dp", "dopamine"))
        for row in runs[mode]:  # spread the lines apart so the picture shows five of them
            row["test_accuracy"] -= 0.05 * k
            row["epsilon"] = None if row["epsilon"] is None else row["epsilon"] * (1 + k / 3)
    _assert_real_png(write_compare_png(runs, tmp_path / "compare.png"))


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "confusion.png"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="class_names"):
        write_confusion_png(np.eye(5, dtype=int), CLASSES[:3], path, title="x")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]


@pytest.mark.parametrize("call, name", [
    (lambda p: write_confusion_png(np.ones((5, 4)), CLASSES, p, title="x"), "confusion"),
    (lambda p: write_confusion_png(-np.eye(5), CLASSES, p, title="x"), "confusion"),
    (lambda p: write_curves_png([], p, title="x"), "rows"),
    (lambda p: write_curves_png([{"loss": 1.0}], p, title="x"), "round"),
    (lambda p: write_compare_png({}, p), "runs"),
    (lambda p: write_compare_png({"dopamine": [{"round": 1}]}, p), "epoch"),
])
def test_bad_figure_inputs_name_the_argument(tmp_path, call, name):
    with pytest.raises(ValueError, match=name):
        call(tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_compare_table_keeps_best_validation_round_not_best_test():
    rows = _rows(12, peak_val=5)  # test accuracy is highest at round 12, validation at round 5
    table = compare_table_md({"dopamine": {"rows": rows, "delta": 1e-5, "accountant": "rdp"},
                              "fedavg": {"rows": _rows(12, private=False, peak_val=3)}})
    lines = table.strip().splitlines()
    assert len(lines) == 4
    fedavg = [c.strip() for c in lines[2].strip("|").split("|")]
    dopamine = [c.strip() for c in lines[3].strip("|").split("|")]
    assert dopamine[0] == "dopamine" and fedavg[0] == "fedavg"  # paper order, not dict order
    assert dopamine[1] == f"{rows[-1]['test_accuracy']:.3f}"  # final round's test accuracy
    assert dopamine[2] == "5"                                    # kept on validation
    assert dopamine[4] == f"{rows[4]['test_accuracy']:.3f}"     # ... with its own test accuracy
    assert dopamine[5] == f"{rows[4]['test_kappa']:.3f}"
    # ε of the whole run (0.8*sqrt(12) = 2.7712...), rounded UP, with its δ and accountant.
    assert dopamine[6:] == ["2.78", "1e-05", "rdp"]
    assert fedavg[2] == "3" and fedavg[6:] == ["∞ (no DP)", "—", "—"]


def test_best_on_validation_ties_and_missing():
    rows = [{"round": 1, "val_accuracy": 0.6, "test_accuracy": 0.9},
            {"round": 2, "val_accuracy": 0.6, "val_kappa": 0.4, "test_accuracy": 0.1},
            {"round": 3, "val_accuracy": 0.6, "val_kappa": 0.4, "test_accuracy": 0.2}]
    assert best_on_validation(rows)["round"] == 2  # higher κ, then the earlier round
    with pytest.raises(ValueError, match="val_accuracy"):
        best_on_validation([{"round": 1, "test_accuracy": 0.9}])


def test_compare_table_refuses_epsilon_without_delta():
    with pytest.raises(ValueError, match="dopamine"):
        compare_table_md({"dopamine": {"rows": _rows(), "accountant": "rdp"}})
    with pytest.raises(ValueError, match="summaries"):
        compare_table_md({})


def test_round_up_never_rounds_down():
    assert round_up(1.0) == 1.0
    assert round_up(1.1) == 1.1       # 1.1 * 100 = 110.00000000000001 must not give 1.11
    assert round_up(0.29) == 0.29     # 0.29 * 100 = 28.999999999999996 must not give 0.28
    assert round_up(1.0000000001) == 1.01
    assert round_up(2.771, 1) == 2.8
    assert round_up(7.0, 0) == 7.0 and round_up(7.01, 0) == 8.0
    assert round_up(math.inf) == math.inf
    rng = random.Random(0)
    for _ in range(20_000):
        x = rng.choice([rng.uniform(0, 50), rng.randint(0, 5000) / 100, rng.randint(0, 500) / 10])
        y = round_up(x)
        assert y >= x and y - x < 0.01 + 1e-9, x
        assert f"{y:.2f}" == f"{y:.2f}" and float(f"{y:.2f}") >= x  # the printed figure too
    with pytest.raises(ValueError, match="NaN"):
        round_up(float("nan"))
    with pytest.raises(ValueError, match="decimals"):
        round_up(1.0, -1)


def _checkpoint(private=True):
    return {
        "format": "dopamine-checkpoint", "format_version": 1, "arch": "squeezenet1_1-dr",
        "num_classes": 5, "class_names": CLASSES, "mode": "dopamine" if private else "fedavg",
        "preprocess": {"image_size": 224, "mean": [0.485, 0.456, 0.406],
                       "std": [0.229, 0.224, 0.225], "crop_threshold": 10.0},
        "privacy": {"epsilon": 9.8012 if private else None, "delta": 1e-5 if private else None,
                    "accountant": "rdp" if private else None,
                    "privacy_model": "patient-level (add/remove one patient), honest-but-curious "
                                     "server, t=0 colluding hospitals",
                    "noise_multiplier": 1.1 if private else None, "sample_rate": 0.02, "steps": 300,
                    "clipping_norm": 2.0 if private else None},
        "metrics": {"val": {"accuracy": 0.71, "kappa": 0.6, "n": 290},
                    "test": {"accuracy": 0.69, "kappa": 0.58, "referable_auc": 0.83, "n": 731,
                             "per_class_recall": [0.9, 0.2, 0.6, 0.1, None]}},
        "config": {"hospitals": 10, "rounds": 30, "synthetic": True}, "round": 17,
        "created": "2026-11-28T18:00:00Z",
    }


def test_model_card_private(tmp_path):
    path = write_model_card(tmp_path / "card" / "MODEL_CARD.md", _checkpoint(),
                            extra={"git_commit": "abc123"})
    text = path.read_text(encoding="utf-8")
    # ε (rounded up), δ and accountant on the same line.
    assert any("ε = 9.81" in line and "δ = 1e-05" in line and "rdp" in line
               for line in text.splitlines())
    assert "not a diagnosis" in text
    assert "round 17" in text and "chosen on validation" in text
    assert "0.690" in text and "0.580" in text                       # test metrics
    assert "synthetic" in text.lower() and "no pretraining" in text
    assert "hospitals: 10" in text and "rounds run: 30" in text and "t = 0" in text
    assert "int8 calibration" in text and "hyper-parameters" in text
    assert "recall, grade 3 (Severe) | — | 0.100" in text
    assert "honest but curious" in text
    assert "crop_threshold | 10.0" in text and "git_commit: abc123" in text
    assert [p.name for p in path.parent.iterdir()] == ["MODEL_CARD.md"]


def test_model_card_non_private_and_refusals(tmp_path):
    text = write_model_card(tmp_path / "c.md", _checkpoint(private=False)).read_text("utf-8")
    assert "ε = ∞" in text and "not a diagnosis" in text
    assert "Trained on synthetic" in text
    bad = _checkpoint()
    bad["privacy"]["accountant"] = None
    with pytest.raises(ValueError, match="accountant"):
        write_model_card(tmp_path / "bad.md", bad)
    with pytest.raises(ValueError, match="checkpoint"):
        write_model_card(tmp_path / "bad.md", {"mode": "dopamine"})
    assert not (tmp_path / "bad.md").exists()


def test_model_card_central_dp_and_parallel(tmp_path):
    central = _checkpoint()
    central["mode"] = "central-dp"
    text = write_model_card(tmp_path / "central.md", central).read_text("utf-8")
    assert "one data holder" in text and "colluding hospitals accounted for" not in text
    parallel = _checkpoint()
    parallel["mode"] = "fl-parallel-dp"
    text = write_model_card(tmp_path / "parallel.md", parallel, extra={"synthetic": False}).read_text()
    assert "maximum over the hospitals" in text and "synthetic images" not in text
