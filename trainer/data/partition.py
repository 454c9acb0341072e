"""Partition samples across K hospitals, by patient: i.i.d. equal, Dirichlet label skew, quantity skew.

A patient's images always go to one hospital (the patient is the privacy unit). A patient's label
for label skew is their worst grade.
"""
from __future__ import annotations

import numpy as np

from trainer.data.datasets import Sample, group_by_patient

SCHEMES = ("iid", "dirichlet", "quantity")


def partition(samples: list[Sample], num_hospitals: int, *, scheme: str = "iid", alpha: float = 0.5,
              seed: int = 0) -> list[list[Sample]]:
    """Split samples across hospitals by patient.

    Args:
        samples: the training samples.
        num_hospitals: K >= 1.
        scheme: "iid" (equal sizes, each hospital's grade mix like the whole: the paper's split),
            "dirichlet" (each grade's patients spread with proportions ~ Dir(alpha): label skew),
            or "quantity" (hospital sizes ~ Dir(alpha), grades i.i.d.: quantity skew).
        alpha: concentration for "dirichlet"/"quantity"; smaller is more skewed.
        seed: same seed, same partition.
    Returns:
        K lists of samples, each in the input order.
    Raises:
        ValueError: unknown scheme, alpha <= 0, K < 1, more hospitals than patients, or an empty
            hospital (the message says what to change).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if isinstance(num_hospitals, bool) or not isinstance(num_hospitals, int) or num_hospitals < 1:
        raise ValueError(f"num_hospitals must be a positive integer, got {num_hospitals!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    groups = group_by_patient(samples)
    pids = list(groups)
    k = num_hospitals
    if k > len(pids):
        raise ValueError(f"{k} hospitals but only {len(pids)} patients: use at most {len(pids)} hospitals")
    rng = np.random.default_rng(seed)
    labels = np.array([max(s.grade for s in groups[p]) for p in pids])
    owner = np.empty(len(pids), dtype=np.int64)
    if scheme == "iid":
        # Shuffle, sort by grade (stable), deal round-robin: equal sizes and the same grade mix.
        order = rng.permutation(len(pids))
        order = order[np.argsort(labels[order], kind="stable")]
        owner[order] = (np.arange(len(pids)) + rng.integers(k)) % k
    elif scheme == "dirichlet":
        for grade in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == grade))
            cuts = (np.cumsum(rng.dirichlet(np.full(k, alpha)))[:-1] * len(idx)).round().astype(int)
            for h, part in enumerate(np.split(idx, cuts)):
                owner[part] = h
    else:
        sizes = _quantity_sizes(rng, len(pids), k, alpha)
        order = rng.permutation(len(pids))
        owner[order] = np.repeat(np.arange(k), sizes)
    parts = [[] for _ in range(k)]
    hospital_of = dict(zip(pids, owner.tolist()))
    for s in samples:
        parts[hospital_of[s.patient_id]].append(s)
    empty = [h for h, part in enumerate(parts) if not part]
    if empty:
        hint = "raise alpha, use fewer hospitals, or try another seed" if scheme != "iid" else "use fewer hospitals"
        raise ValueError(f"hospital(s) {empty} got no patients with scheme={scheme!r}, alpha={alpha}, "
                         f"{k} hospitals, {len(pids)} patients: {hint}")
    return parts


def _quantity_sizes(rng: np.random.Generator, n: int, k: int, alpha: float) -> np.ndarray:
    """Hospital sizes summing to n with proportions ~ Dir(alpha) (largest-remainder rounding)."""
    raw = rng.dirichlet(np.full(k, alpha)) * n
    sizes = np.floor(raw).astype(int)
    rest = n - sizes.sum()
    sizes[np.argsort(-(raw - sizes), kind="stable")[:rest]] += 1
    return sizes


def partition_summary(parts: list[list[Sample]]) -> str:
    """A text table: per hospital, patients, images and the grade histogram, then the total.

    Returns:
        The table as one string (lines joined by newlines).
    """
    header = f"{'hospital':>8} {'patients':>8} {'images':>7} " + " ".join(f"{'g' + str(g):>5}" for g in range(5))
    lines = [header, "-" * len(header)]
    totals = np.zeros(5, dtype=int)
    all_patients = 0
    for h, part in enumerate(parts):
        hist = np.bincount([s.grade for s in part], minlength=5)
        totals += hist
        patients = len({s.patient_id for s in part})
        all_patients += patients
        lines.append(f"{h:>8} {patients:>8} {len(part):>7} " + " ".join(f"{c:>5}" for c in hist))
    lines.append("-" * len(header))
    lines.append(f"{'total':>8} {all_patients:>8} {int(totals.sum()):>7} " + " ".join(f"{c:>5}" for c in totals))
    return "\n".join(lines)
