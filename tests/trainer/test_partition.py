"""Partitioning across hospitals, by patient: iid, Dirichlet label skew, quantity skew."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.data import Sample, partition, partition_summary


def _samples(patients=60, eyes=2, seed=0):
    rng = np.random.default_rng(seed)
    grades = rng.choice(5, size=patients, p=[0.5, 0.1, 0.25, 0.05, 0.1])
    return [Sample(f"{p}_{e}", Path(f"/nowhere/{p}_{e}.jpeg"), int(grades[p]), str(p))
            for p in range(patients) for e in ("left", "right")[:eyes]]


def _check_by_patient(samples, parts):
    owner = {}
    for h, part in enumerate(parts):
        for s in part:
            assert owner.setdefault(s.patient_id, h) == h, "a patient's images are in two hospitals"
    assert sorted(s.sample_id for p in parts for s in p) == sorted(s.sample_id for s in samples)


def test_iid_equal_sizes_and_similar_grade_mix():
    samples = _samples(60)
    parts = partition(samples, 4, scheme="iid", seed=0)
    _check_by_patient(samples, parts)
    assert [len({s.patient_id for s in p}) for p in parts] == [15, 15, 15, 15]
    overall = np.bincount([s.grade for s in samples], minlength=5) / len(samples)
    for part in parts:
        hist = np.bincount([s.grade for s in part], minlength=5) / len(part)
        assert np.abs(hist - overall).max() < 0.1


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "quantity"])
def test_seeded_and_by_patient(scheme):
    samples = _samples(80)
    a = partition(samples, 3, scheme=scheme, alpha=1.0, seed=4)
    b = partition(samples, 3, scheme=scheme, alpha=1.0, seed=4)
    c = partition(samples, 3, scheme=scheme, alpha=1.0, seed=5)
    assert a == b and a != c
    _check_by_patient(samples, a)


def test_dirichlet_small_alpha_skews_labels_more():
    samples = _samples(400, eyes=1)

    def skew(alpha):  # mean total-variation distance of each hospital's grade mix from the whole
        overall = np.bincount([s.grade for s in samples], minlength=5) / len(samples)
        tv = []
        for seed in range(5):
            for part in partition(samples, 4, scheme="dirichlet", alpha=alpha, seed=seed):
                hist = np.bincount([s.grade for s in part], minlength=5) / len(part)
                tv.append(0.5 * np.abs(hist - overall).sum())
        return float(np.mean(tv))

    assert skew(0.3) > skew(100.0) + 0.15


def test_quantity_skew_varies_sizes():
    samples = _samples(300, eyes=1)
    sizes = [len(p) for p in partition(samples, 5, scheme="quantity", alpha=0.5, seed=2)]
    assert sum(sizes) == 300 and max(sizes) > 2 * min(sizes)
    equal = [len(p) for p in partition(samples, 5, scheme="quantity", alpha=1000.0, seed=2)]
    assert max(equal) - min(equal) <= 10


def test_errors_say_what_to_change():
    samples = _samples(5)
    with pytest.raises(ValueError, match="6 hospitals but only 5 patients: use at most 5"):
        partition(samples, 6)
    with pytest.raises(ValueError, match=r"got no patients.*raise alpha, use fewer hospitals"):
        for seed in range(50):  # tiny alpha with few patients leaves a hospital empty
            partition(_samples(12), 4, scheme="dirichlet", alpha=0.01, seed=seed)
    with pytest.raises(ValueError, match="scheme must be one of"):
        partition(samples, 2, scheme="round-robin")
    with pytest.raises(ValueError, match="alpha must be > 0"):
        partition(samples, 2, scheme="dirichlet", alpha=0)


def test_summary_table():
    samples = _samples(20)
    parts = partition(samples, 2, seed=0)
    table = partition_summary(parts)
    lines = table.splitlines()
    assert "patients" in lines[0] and "g4" in lines[0]
    assert lines[2].split()[:3] == ["0", "10", "20"]
    total = lines[-1].split()
    assert total[:3] == ["total", "20", "40"]
    assert [int(v) for v in total[3:]] == np.bincount([s.grade for s in samples], minlength=5).tolist()
