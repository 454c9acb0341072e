"""Device rounds with a real installed model (issue 12), as the unlucky patient and the curious hub:
a new photo set cannot refresh a spent patient, the upload does not tell the set's size, a
seeded round never leaves the device, and the CLI shows every ε rounded up with its scope.

The model is the session's small ONNX export, signed and installed through the device's own
store (as sync installs it); photos are synthetic fundus photos (plumbing, not accuracy).
"""
import inspect
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
from tests.helpers.bundles import run_cli, write_bundle
from PIL import Image
from tests.helpers.photos import fundus_photos, png_bytes

from edge_client.api import EdgeClient
from edge_client.budget import BudgetExceeded
from edge_client.errors import EdgeError
from edge_client.head_training import train_head
from edge_client.privacy_figures import epsilon_str
from edge_client.store import ModelStore
from edge_client.training import RoundSettings
from edge_client.updates import PAYLOAD_FIELDS, describe_payload

NOT_PUBLIC = {"delta_weight", "delta_bias", "created"}  # the noised change itself, and the time


def _install(home, onnx_model, keys, tmp_path) -> EdgeClient:
    """Install version 1 (the test bundle, ε = 9.8, δ = 1e-5) into ``home`` as sync would."""
    dist = write_bundle(tmp_path / f"dist-{home.name}", version=1, model_file=onnx_model, key=keys[0])
    data, sig = (dist / "manifest.json").read_bytes(), (dist / "manifest.sig").read_bytes()
    manifest = json.loads(data)
    store = ModelStore(home)
    store.pin_key(bytes(keys[0].verify_key))
    (home / "partial").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dist / "model_fp32.onnx", home / "partial" / "model.part")
    store.install(data, sig, manifest, manifest["artifacts"][0], home / "partial" / "model.part")
    store.set_current(1)
    return EdgeClient(home)


def _clinic(folder, rows: list[tuple[str, str]], *, seed: int):
    """Photos written as PNG and a labels CSV: rows are (file name, patient id)."""
    folder.mkdir(parents=True, exist_ok=True)
    for (name, _), img in zip(rows, fundus_photos(len(rows), size=64, seed=seed)):
        if not (folder / name).exists():
            (folder / name).write_bytes(png_bytes(img))
    (folder / "labels.csv").write_text("image,grade,patient\n" + "".join(f"{n},{i % 5},{p}\n"
                                                                        for i, (n, p) in enumerate(rows)))
    return folder / "labels.csv"


def test_a_new_set_cannot_raise_a_spent_patients_budget(tmp_path, onnx_model, keys):
    client = _install(tmp_path / "tablet", onnx_model, keys, tmp_path)
    first = _clinic(tmp_path / "visit1", [("a.png", "MRN-17"), ("b.png", "MRN-17"), ("c.png", "MRN-2")], seed=1)
    client.train_round(first, "personal", 5.0, settings=RoundSettings(budget=6.0))
    # months later: the same photo re-encoded as JPEG, a new photo of the same patient, new patients
    second = tmp_path / "visit2"
    second.mkdir()
    buf = io.BytesIO()
    Image.open(tmp_path / "visit1" / "a.png").convert("RGB").save(buf, format="JPEG", quality=85)
    (second / "a_export.jpg").write_bytes(buf.getvalue())
    labels = _clinic(second, [("a_export.jpg", "mrn-17"), ("new.png", "MRN-17"), ("d.png", "MRN-5"),
                              ("e.png", "MRN-6")], seed=2)
    before = client.budget_status(labels)
    assert before.per_patient[0].rounds == 1 and 4.9 < before.spent <= 5.0
    with pytest.raises(BudgetExceeded, match=r"patient 'mrn-17' \(rows 2, 3\).*over its budget 6.00"):
        client.train_round(labels, "federated", 4.0)  # RDP: 5 then 4 compose to 6.65
    assert client.budget_status(labels).spent == before.spent and client.update_queue() == []  # nothing charged
    r = run_cli("edge_client", "train", "--labels", labels, "--epsilon", "4", "--home", tmp_path / "tablet")
    assert r.returncode == 2 and "over its budget" in r.stderr and "mrn-17" in r.stderr
    # without that patient's rows the other patients train, from their own (zero) spend
    (second / "labels.csv").write_text("image,grade,patient\nd.png,2,MRN-5\ne.png,3,MRN-6\n")
    assert client.train_round(second / "labels.csv", "federated", 2.0).epsilon_spent <= 2.0


def test_the_upload_carries_public_constants_only_and_does_not_tell_the_set_size(tmp_path, onnx_model, keys):
    """A curious hub compares two clinics' updates: 5 patients and 40 patients."""
    payloads = {}
    for n in (5, 40):
        client = _install(tmp_path / f"clinic{n}", onnx_model, keys, tmp_path)
        labels = _clinic(tmp_path / f"photos{n}", [(f"{i}.png", f"patient-{i}") for i in range(n)], seed=n)
        result = client.train_round(labels, "federated", 4.0)
        payloads[n] = client.update_payload(result.update_id)
        assert list(payloads[n]) == list(PAYLOAD_FIELDS)  # exactly the fields the device describes
    small, large = payloads[5], payloads[40]
    assert {k: v for k, v in small.items() if k not in NOT_PUBLIC} == \
        {k: v for k, v in large.items() if k not in NOT_PUBLIC}
    assert small["seeded"] is False and small["epsilon"] <= 4.0 and small["delta"] < 1 / small["max_patients"]
    # the update's size: its noise part has the same scale for any number of patients (the divisor is
    # a constant); dividing by q·N made it shrink 8-fold from 5 to 40 patients
    norms = {n: float(np.linalg.norm(np.asarray(p["delta_weight"]))) for n, p in payloads.items()}
    assert 0.8 < norms[40] / norms[5] < 1.25, norms
    words = describe_payload(small)
    assert [w.split(" = ")[0] for w in words[:-1]] == list(PAYLOAD_FIELDS)
    assert words[-1].startswith("never sent: ") and "the number of photos or patients" in words[-1]
    shown = run_cli("edge_client", "updates", "show", "1", "--home", tmp_path / "clinic5").stdout
    assert json.loads(shown) == small  # what the user inspects is what is uploaded
    explained = run_cli("edge_client", "updates", "show", "1", "--explain", "--home", tmp_path / "clinic5").stdout
    assert explained.splitlines() == words


def test_a_seeded_round_never_leaves_the_device_and_default_noise_is_the_os_csprng(tmp_path, onnx_model, keys,
                                                                                   monkeypatch):
    client = _install(tmp_path / "tablet", onnx_model, keys, tmp_path)
    labels = _clinic(tmp_path / "photos", [(f"{i}.png", f"p{i}") for i in range(6)], seed=3)
    seeded = client.train_round(labels, "federated", 3.0, seed=0)
    payload = client.update_payload(seeded.update_id)
    assert seeded.seeded and payload["seeded"] is True
    assert client.update_queue()[0].status == "rejected" and client.pending_updates() == []
    with pytest.raises(EdgeError, match="test seed"):
        client.approve_update(seeded.update_id)
    assert client.upload_updates("http://127.0.0.1:9", "token").uploaded == []
    # unseeded: noise and sampling come from os.urandom, whatever numpy's global seed says
    calls = []
    real = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: calls.append(n) or real(n))
    updates = []
    for _ in range(2):
        np.random.seed(0)
        r = client.train_round(labels, "federated", 3.0)
        updates.append(np.asarray(client.update_payload(r.update_id)["delta_weight"]))
        assert not r.seeded and client.update_payload(r.update_id)["seeded"] is False
    assert sum(calls) >= 2 * 50 * 8 * 2 * 2565  # two rounds x 50 steps x (Box-Muller: 2 uniforms a coordinate)
    assert not np.allclose(updates[0], updates[1])
    assert inspect.signature(train_head).parameters["rng"].default is inspect.Parameter.empty  # no silent default
    out = run_cli("edge_client", "train", "--labels", labels, "--epsilon", "1", "--seed", "1", "--home",
                  tmp_path / "tablet")
    assert out.returncode == 0 and "no DP guarantee: test build" in out.stdout and "never uploaded" in out.stdout
    assert not re.search(r"(epsilon|ε) = \d", out.stdout), out.stdout  # no ε presented as a guarantee


def test_cli_shows_every_epsilon_rounded_up_with_what_it_covers(tmp_path, onnx_model, keys):
    home = tmp_path / "tablet"
    client = _install(home, onnx_model, keys, tmp_path)
    labels = _clinic(tmp_path / "photos", [(f"{i}.png", f"p{i // 2}") for i in range(8)], seed=4)
    out = run_cli("edge_client", "train", "--labels", labels, "--epsilon", "3", "--home", home)
    assert out.returncode == 0, out.stderr
    status = client.budget_status(labels)
    payload = client.update_payload(1)
    spent, round_eps = status.spent, payload["epsilon"]
    assert f"this round ε = {epsilon_str(round_eps)}, δ = 1e-05 (RDP)" in out.stdout
    assert f"the most-spent patient in these photos: ε = {epsilon_str(spent)}, δ = 1e-05 (RDP)" in out.stdout
    assert "covers this device's own training rounds only" in out.stdout
    # a patient also in the hospitals' set of model v1 (ε = 9.8, δ = 1e-5): the sum, not the larger one
    both = f"ε = {epsilon_str(spent + 9.8)}, δ = 2e-05"
    assert both in out.stdout
    budget = run_cli("edge_client", "budget", "--labels", labels, "--home", home).stdout
    assert f"ε = {epsilon_str(spent)}, δ = 1e-05 (RDP) in 1 rounds" in budget and both in budget
    assert re.search(rf"\bp0\s+{re.escape(epsilon_str(spent))}\s+1\s+2,3\b", budget), budget
    listing = run_cli("edge_client", "updates", "list", "--home", home).stdout
    assert f" {epsilon_str(round_eps)} " in listing
