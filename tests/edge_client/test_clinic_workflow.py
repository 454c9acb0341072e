"""A clinic's day on a real device state: patient, eye and operator on each result, refused attempts
logged, "could not be graded: refer" after N refusals of one eye, calibration and the
out-of-distribution check applied from the signed manifest, the CSV export, and an old history
migrated. The model is the session's small ONNX export served by a real hub."""
from __future__ import annotations

import base64
import csv
import json
import re
import sqlite3

import numpy as np
import pytest
from tests.helpers.bundles import HubProcess, init_hub, write_bundle
from tests.helpers.photos import fundus_photos, png_bytes
from tests.helpers.real_photos import non_fundus_sources

from edge_client.api import EdgeClient
from edge_client.errors import PhotoQualityError, UngradableReferral
from edge_client.referral import calibrated_probabilities
from hub.registry import Registry

LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def _publish(tmp_path, root, keys, onnx_model, version: int, **changes) -> None:
    """A signed bundle whose manifest carries `changes` (re-signed with the publisher's key)."""
    dist = write_bundle(tmp_path / f"d{version}", version=version, model_file=onnx_model, key=keys[0])
    manifest = {**json.loads((dist / "manifest.json").read_text()), **changes}
    raw = json.dumps(manifest, indent=2).encode()
    (dist / "manifest.json").write_bytes(raw)
    (dist / "manifest.sig").write_text(base64.b64encode(keys[0].sign(raw).signature).decode() + "\n")
    registry = Registry(root)
    try:
        registry.publish(dist)
    finally:
        registry.close()


@pytest.fixture()
def clinic(tmp_path, keys, onnx_model):
    root = tmp_path / "hub"
    init_hub(root, keys[1])
    _publish(tmp_path, root, keys, onnx_model, 1)
    with HubProcess(root) as hub:
        client = EdgeClient(tmp_path / "phone")
        client.sync(hub.url, public_key=keys[1])
        yield client, hub, root


def test_refusals_per_eye_lead_to_could_not_be_graded_refer(clinic, tmp_path):
    client, _, _ = clinic
    person = png_bytes(non_fundus_sources()[0][2][0])  # skimage's astronaut: a real photo of a person
    fundus = png_bytes(fundus_photos(1, size=128, seed=21)[0])
    seen = []
    for attempt in (1, 2):
        with pytest.raises(PhotoQualityError) as err:
            client.diagnose(person, patient_id="P-17", eye="left", operator="Ana")
        assert not isinstance(err.value, UngradableReferral)
        assert err.value.reason == "not_fundus" and err.value.attempts == attempt
        seen.append(err.value.history_id)
    with pytest.raises(PhotoQualityError) as err:  # the other eye counts on its own
        client.diagnose(person, patient_id="P-17", eye="right")
    assert err.value.attempts == 1
    with pytest.raises(UngradableReferral) as err:
        client.diagnose(person, patient_id="P-17", eye="left", operator="Ana")
    assert err.value.reason == "ungradable" and err.value.last_reason == "not_fundus" and err.value.attempts == 3
    assert "could not be graded after 3 attempts: refer" in err.value.hint
    with pytest.raises(PhotoQualityError) as err:  # without a patient id nothing can be counted
        client.diagnose(person)
    assert err.value.attempts is None and not isinstance(err.value, UngradableReferral)

    d = client.diagnose(fundus, patient_id="P-17", eye="left", operator="Ana")
    assert d.decision in ("refer", "no_referral", "uncertain_refer") and d.refer == (d.decision != "no_referral")
    assert d.patient_id == "P-17" and d.eye == "left" and d.operator == "Ana" and LOCAL_TIME.match(d.local_time)
    assert d.card.version == 1 and not d.card.validated and d.card.privacy_text == "ε = 9.80, δ = 1e-05 (RDP)"
    assert d.p_referable == pytest.approx(sum(d.probabilities[2:])) and d.reason.startswith("P(referable)")
    with pytest.raises(PhotoQualityError) as err:  # a graded photo starts the count again
        client.diagnose(person, patient_id="P-17", eye="left")
    assert err.value.attempts == 1

    rows = {e.id: e for e in client.history()}
    assert [rows[i].decision for i in seen] == ["refused", "refused"]
    ungradable = [e for e in rows.values() if e.decision == "ungradable"]
    assert len(ungradable) == 1 and ungradable[0].refer and ungradable[0].refusal == "not_fundus"
    assert all(e.photo_path is None and e.grade is None and e.card.version == 1
               for e in rows.values() if e.decision in ("refused", "ungradable"))
    assert not (client.home / "photos").exists()  # refused photos are not kept unless asked

    out = client.export_history_csv(tmp_path / "history.csv")
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(table) == len(rows) == 7
    graded = next(r for r in table if r["id"] == str(d.history_id))
    assert graded["patient_id"] == "P-17" and graded["eye"] == "left" and graded["operator"] == "Ana"
    assert graded["decision"] == d.decision and float(graded["p_referable"]) == pytest.approx(d.p_referable, abs=1e-4)
    assert graded["validated"] == "NOT VALIDATED" and graded["calibrated"] == "no"
    assert graded["privacy"] == "ε = 9.80, δ = 1e-05 (RDP)" and LOCAL_TIME.match(graded["local_time"])
    assert [r["decision"] for r in table].count("ungradable") == 1


def test_bad_clinic_fields_are_refused_before_anything_is_logged(clinic):
    client, _, _ = clinic
    photo = png_bytes(fundus_photos(1, size=96, seed=3)[0])
    with pytest.raises(ValueError, match="eye must be one of"):
        client.diagnose(photo, eye="up")
    with pytest.raises(ValueError, match="patient_id"):
        client.diagnose(photo, patient_id="x\n=cmd")
    assert client.history() == []


def test_calibration_threshold_and_ood_come_from_the_signed_manifest(clinic, tmp_path, keys, onnx_model):
    client, hub, root = clinic
    photo = png_bytes(fundus_photos(1, size=128, seed=5)[0])
    raw = client.diagnose(photo)
    _publish(tmp_path, root, keys, onnx_model, 2,
             calibration={"method": "temperature", "temperature": 2.5, "source": "test"},
             referral={"refer_at_grade": 2, "threshold": 0.05, "uncertain_upper": 0.06,
                       "validation": {"validated": True, "sensitivity": 0.9, "specificity": 0.5, "source": "t"}})
    client.sync(hub.url)
    cal = client.diagnose(photo)
    expected = calibrated_probabilities(np.log(raw.probabilities), 2.5)  # log p = z + const
    assert np.allclose(cal.probabilities, expected, atol=1e-6)
    assert cal.card.calibrated and cal.card.temperature == 2.5 and cal.card.validated and cal.card.version == 2
    assert cal.decision == ("no_referral" if cal.p_referable < 0.05 else
                            "uncertain_refer" if cal.p_referable < 0.06 else "refer")

    # statistics no fundus photo is near: every photo is "not like the training photos"
    _publish(tmp_path, root, keys, onnx_model, 3, ood={"mean": [1e3] * 512, "scale": [1.0] * 512, "threshold": 3.0})
    client.sync(hub.url)
    with pytest.raises(PhotoQualityError) as err:
        client.diagnose(photo, patient_id="P-1")
    assert err.value.reason == "out_of_distribution" and err.value.measures["feature_distance"] > 3.0
    assert client.history()[0].refusal == "out_of_distribution" and client.installed_model().card.ood_check


def test_a_pre_issue_14_history_is_migrated(tmp_path):
    home = tmp_path / "phone"
    home.mkdir()
    db = sqlite3.connect(home / "history.sqlite")
    db.executescript("""CREATE TABLE results (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,
        image_sha256 TEXT NOT NULL, grade INTEGER NOT NULL, grade_name TEXT NOT NULL, probabilities TEXT NOT NULL,
        confidence REAL NOT NULL, refer INTEGER NOT NULL, model_version INTEGER NOT NULL, photo_path TEXT);
        INSERT INTO results VALUES (4, '2026-11-01T10:00:00Z', 'ab', 2, 'Moderate', '[0.1,0.1,0.6,0.1,0.1]',
        0.6, 1, 1, NULL);""")
    db.commit()
    db.close()
    (entry,) = EdgeClient(home).history()
    assert entry.id == 4 and entry.decision == "refer" and entry.grade == 2 and entry.card is None
    assert "before the P(referable) rule" in entry.reason
    assert EdgeClient(home).history()[0].id == 4  # reopening does not migrate twice
