"""The Train screen's actions (no window): labels and budget, a round without a model, upload guards.

A real EdgeClient on a temporary home; photos from `python -m trainer synth`. The full round with
a model and a hub runs in test_app_ui.py.
"""
import socket

import pytest
from tests.helpers.bundles import run_cli

from edge_client.api import EdgeClient
from mobile_app.actions import Actions



@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    work = tmp_path_factory.mktemp("labels")
    r = run_cli("trainer", "synth", "--out", work, "--n", "6", "--size", "32", "--seed", "2")
    assert r.returncode == 0, r.stderr
    rows = [line.split(",") for line in (work / "train.csv").read_text().splitlines()[1:]]
    good = work / "labels.csv"
    good.write_text("image,grade,patient\n" + "".join(f"train_images/{i}.png,{g},p{n // 2}\n"
                                                      for n, (i, g) in enumerate(rows)))
    bad = work / "bad.csv"
    bad.write_text(f"image,grade,patient\ntrain_images/{rows[0][0]}.png,9,p0\nnope.png,1,\n")
    return good, bad, [int(g) for _, g in rows]


def test_labels_histogram_patients_and_fresh_budget(tmp_path, labels):
    good, _, grades = labels
    out = Actions(EdgeClient(tmp_path)).labels(good)
    assert out.status == "ok" and out.photos == 6 and out.patients == 3
    assert list(out.histogram) == [grades.count(g) for g in range(5)]
    assert (out.spent, out.budget, out.delta, out.rounds) == (0.0, 10.0, 1e-5, 0)   # before the first round


def test_bad_rows_are_all_reported(tmp_path, labels):
    _, bad, _ = labels
    out = Actions(EdgeClient(tmp_path)).labels(bad)
    assert out.status == "bad" and out.photos == 0
    assert "row 2" in out.problems[0] and out.problems[1] == "bad.csv row 3: no patient id"
    assert "nope.png" in out.problems[2] and len(out.problems) == 3
    trained = Actions(EdgeClient(tmp_path)).train(bad, "federated", 2.0)
    assert trained.status == "bad_labels" and trained.problems == out.problems


def test_round_without_a_model_says_so(tmp_path, labels):
    good, _, _ = labels
    out = Actions(EdgeClient(tmp_path)).train(good, "personal", 2.0)
    assert out.status == "no_model" and out.reason


def test_upload_guards_and_nothing_approved(tmp_path):
    actions = Actions(EdgeClient(tmp_path))
    assert actions.upload("", "tok").status == "no_server"
    assert actions.upload("http://127.0.0.1:9", "").status == "no_token"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert actions.upload(dead, "tok").status == "nothing"
    assert actions.update_queue() == []
