"""The device protects patients (issue 12): the accountant is keyed by patient, a new photo set,
visit, file or spelling of the id never refreshes a spent patient, rounds from before per-patient
accounting are never forgotten, and δ stays below 1/max_patients. No model needed: the labels
reader and the accountant are exercised as a clinic would feed them.
"""
import sqlite3
from pathlib import Path

import pytest
from tests.helpers.bundles import run_cli

from edge_client.budget import Budget, BudgetExceeded
from edge_client.labels import LabelledPhoto, LabelsError, read_labels
from edge_client.privacy_figures import epsilon_str
from edge_client.rdp import compute_epsilon, epsilon_of_history
from edge_client.training import RoundSettings

ROUND = dict(noise_multiplier=3.0, sample_rate=0.5, steps=50)


def _photo(i: int, patient: str, row: int) -> LabelledPhoto:
    return LabelledPhoto(Path(f"{i}.png"), i % 5, patient, f"{i:064x}", row)


def _record(acct: Budget, photos, **extra):
    return acct.record(photos, mode="personal", clipping_norm=1.0, model_version=1, **ROUND, **extra)


def test_labels_need_a_patient_id_on_every_row(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(bytes([i]) * 10)
    (tmp_path / "labels.csv").write_text("image,grade,patient\n0.png,1,P-1\n1.png,2,\n2.png,0\n")
    with pytest.raises(LabelsError) as err:
        read_labels(tmp_path / "labels.csv")
    assert err.value.problems == ["labels.csv row 3: no patient id", "labels.csv row 4: no patient id"]
    (tmp_path / "old.csv").write_text("image,grade\n0.png,1\n")  # the issue-8 format: each photo its own patient
    with pytest.raises(LabelsError, match="no patient column: the first line must be the header image,grade,patient"):
        read_labels(tmp_path / "old.csv")
    r = run_cli("edge_client", "train", "--labels", tmp_path / "labels.csv", "--home", tmp_path / "home")
    assert r.returncode == 2 and "labels.csv row 3: no patient id" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "home" / "training.sqlite").exists() or \
        sqlite3.connect(tmp_path / "home" / "training.sqlite").execute("SELECT COUNT(*) FROM patient_rounds"
                                                                       ).fetchone()[0] == 0


def test_a_patient_composes_across_sets_visits_files_and_spellings_of_the_id(tmp_path):
    """The unlucky patient 'P-7' is trained on in three sets; each set must start from their spend."""
    b = Budget(tmp_path)
    first = [_photo(1, "P-7", 2), _photo(2, "P-7", 3), _photo(3, "Q-1", 4)]
    _record(b, first, budget=10.0)
    one = compute_epsilon(**ROUND, delta=1e-5)
    # a later visit: new photos (new bytes), the id typed in another case with a stray space
    visit = [_photo(10, "p-7 ", 2), _photo(11, "NEW-1", 3)]
    st = b.status(visit)
    assert [(p.patient, p.rounds) for p in st.per_patient] == [("p-7 ", 1), ("NEW-1", 0)]
    assert st.spent == pytest.approx(one)
    _record(b, visit)
    # a set that re-files an old photo of P-7 under a wrong id: the two ids now compose as one
    # patient, and in the round they are one privacy unit (clipped together)
    mixed = [_photo(2, "X-99", 2), _photo(20, "X-99", 3), _photo(21, "P-7", 4), _photo(22, "Z-3", 5)]
    st = b.status(mixed)
    assert [(p.patient, p.rows, p.rounds) for p in st.per_patient] == [("X-99", (2, 3, 4), 2), ("Z-3", (5,), 0)]
    three = epsilon_of_history([tuple(ROUND.values())] * 3, delta=1e-5)
    assert three > 10.0
    with pytest.raises(BudgetExceeded, match=rf"patient 'X-99' \(rows 2, 3, 4\) to epsilon = {epsilon_str(three)}"
                                             r".*over its budget 10.00"):
        _record(b, mixed)
    assert b.status(mixed).per_patient[0].rounds == 2  # the refused round charged no one
    fresh = b.record([_photo(30, "Z-3", 2)], mode="federated", clipping_norm=1.0, model_version=1, **ROUND)
    assert fresh.epsilon_after == pytest.approx(one)  # the budget is per patient: others still train
    b.close()


LEGACY_SCHEMA = """
CREATE TABLE photo_sets (set_id TEXT PRIMARY KEY, created TEXT NOT NULL, budget REAL NOT NULL, delta REAL NOT NULL);
CREATE TABLE set_photos (set_id TEXT NOT NULL REFERENCES photo_sets(set_id), image_sha256 TEXT NOT NULL,
    PRIMARY KEY (set_id, image_sha256));
CREATE TABLE rounds (id INTEGER PRIMARY KEY AUTOINCREMENT, set_id TEXT NOT NULL REFERENCES photo_sets(set_id),
    time TEXT NOT NULL, mode TEXT NOT NULL, noise_multiplier REAL NOT NULL, sample_rate REAL NOT NULL,
    steps INTEGER NOT NULL, clipping_norm REAL NOT NULL, model_version INTEGER, epsilon_after REAL NOT NULL);
"""


def test_rounds_from_before_patient_accounting_are_charged_to_every_patient_of_their_photos(tmp_path):
    """A tablet updated from the per-photo-set accountant (issue 8) keeps every ε it spent."""
    db = sqlite3.connect(tmp_path / "training.sqlite")
    db.executescript(LEGACY_SCHEMA)
    db.execute("INSERT INTO photo_sets VALUES ('s1', '2026-01-01T00:00:00Z', 8.0, 1e-5)")
    db.executemany("INSERT INTO set_photos VALUES ('s1', ?)", [(f"{i:064x}",) for i in (1, 2, 3)])
    db.executemany("INSERT INTO rounds (set_id, time, mode, noise_multiplier, sample_rate, steps, clipping_norm, "
                   "model_version, epsilon_after) VALUES ('s1', 't', 'federated', 8.0, 1.0, 50, 1.0, 1, 0)", [()] * 2)
    db.commit()
    db.close()
    legacy = epsilon_of_history([(8.0, 1.0, 50)] * 2, delta=1e-5)
    b = Budget(tmp_path)
    # photo 2 (trained in set s1) now comes with its patient id, beside a new photo of the same patient
    photos = [_photo(2, "A", 2), _photo(40, "A", 3), _photo(41, "B", 4)]
    st = b.status(photos)
    assert (st.budget, st.fixed, st.legacy_rounds) == (8.0, True, 2)  # the old sets' budget, never raised
    assert [(p.patient, p.rounds) for p in st.per_patient] == [("A", 2), ("B", 0)]
    assert st.spent == pytest.approx(legacy) and legacy > 6
    with pytest.raises(BudgetExceeded, match="patient 'A'"):
        b.check(photos, **ROUND)  # 6.1 on top of 6.1 > 8: refused for A
    with pytest.raises(BudgetExceeded, match="cannot be raised"):
        b.check([_photo(41, "B", 2)], **ROUND, budget=10.0)
    assert b.check([_photo(41, "B", 2)], **ROUND) == pytest.approx(compute_epsilon(**ROUND, delta=1e-5))
    b.close()


def test_delta_must_stay_below_one_over_the_public_patient_cap(tmp_path):
    with pytest.raises(ValueError, match=r"delta 0.001 must be above 0 and below 1/max_patients = 0.0001"):
        RoundSettings(delta=1e-3)
    with pytest.raises(ValueError, match="max_patients"):
        RoundSettings(max_patients=200_000)  # δ = 1e-5 is not below 1/200 000
    RoundSettings(delta=1e-6, max_patients=200_000)
    b = Budget(tmp_path)
    _record(b, [_photo(i, f"p{i}", i + 2) for i in range(4)], max_patients=5)
    with pytest.raises(BudgetExceeded, match="would hold 6 patients, over its public cap max_patients = 5"):
        _record(b, [_photo(i, f"p{i}", i + 2) for i in range(2, 6)], max_patients=5)
    _record(b, [_photo(i, f"p{i}", i + 2) for i in range(1, 5)], max_patients=5)  # 5 patients: allowed
    b.close()
