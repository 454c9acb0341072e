"""The device's privacy accountant: one per PATIENT, kept in EDGE_HOME/training.sqlite.

The unit of privacy is the patient (docs/DESIGN.md), so every round (personal or federated:
they share the budget) is charged to each patient it trained on, and a patient's spend composes
every round charged to them, whatever photo set, visit or file it came through: a new labels CSV,
new photos of the same patient or a re-encoded copy of an old photo start from the patient's
spend, never from zero. One budget per patient, the same for every patient of the device, fixed
at the device's first round (it may be lowered later, never raised), with one δ.

Patients are keyed privately: HMAC-SHA256 under a random salt made on the device at first use
of the clinic's patient id (``labels.normalise_patient_id``). The clinic's ids are never stored
here and nothing of this file is ever uploaded; the hash makes the keys unlinkable across
devices, but a thief of the whole state folder who can guess ids can test them.

Links: a photo (sha256) seen before under another patient id joins the two ids for good (a typo
fixed, or one person filed twice): from then on they compose as one patient and, in a round that
holds both, are clipped as one unit. Merging can only over-count, never under-count.

Rounds from before per-patient accounting (the per-photo-set tables ``photo_sets``,
``set_photos``, ``rounds`` of issue 8) are kept and never forgotten: such a round is charged to
every patient with a photo (same sha256) in the set it trained on.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from edge_client.errors import EdgeError
from edge_client.labels import LabelledPhoto, normalise_patient_id
from edge_client.privacy_figures import epsilon_str
from edge_client.rdp import epsilon_of_history

__all__ = ["BudgetExceeded", "BudgetStatus", "PatientBudget", "Charge", "Budget", "photo_set_id",
           "DEFAULT_BUDGET", "DEFAULT_DELTA"]

DEFAULT_BUDGET = 10.0
DEFAULT_DELTA = 1e-5
_SHOW_PATIENTS = 3  # patients named in a refusal; the rest are counted

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_privacy (
    id INTEGER PRIMARY KEY CHECK (id = 1), salt TEXT NOT NULL, budget REAL, delta REAL, fixed TEXT);
CREATE TABLE IF NOT EXISTS patients (key TEXT PRIMARY KEY, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patient_photos (
    key TEXT NOT NULL, image_sha256 TEXT NOT NULL, PRIMARY KEY (key, image_sha256));
CREATE INDEX IF NOT EXISTS patient_photos_image ON patient_photos(image_sha256);
CREATE TABLE IF NOT EXISTS patient_links (
    a TEXT NOT NULL, b TEXT NOT NULL, image_sha256 TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (a, b));
CREATE TABLE IF NOT EXISTS patient_rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, mode TEXT NOT NULL, noise_multiplier REAL NOT NULL,
    sample_rate REAL NOT NULL, steps INTEGER NOT NULL, clipping_norm REAL NOT NULL, model_version INTEGER,
    seeded INTEGER NOT NULL, patients INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS round_patients (
    round_id INTEGER NOT NULL REFERENCES patient_rounds(id), key TEXT NOT NULL, PRIMARY KEY (round_id, key));
CREATE INDEX IF NOT EXISTS round_patients_key ON round_patients(key);
"""


class BudgetExceeded(EdgeError):
    """A round that would take a patient past their privacy budget (or break the device's fixed
    budget, δ or patient cap); nothing was trained or charged."""


@dataclass(frozen=True)
class PatientBudget:
    """One patient of a labels CSV. ``patient`` is the clinic's id as typed (shown on this device
    only); ``spent`` composes every round charged to them on this device (linked ids and rounds
    from before per-patient accounting included)."""

    patient: str
    rows: tuple[int, ...]
    spent: float
    rounds: int


@dataclass
class BudgetStatus:
    """Where the patients of one labels CSV stand.

    ``spent``/``rounds``: the most-spent patient's. ``budget``/``delta``: the device's per-patient
    budget (the default until its first round fixes it, then ``fixed`` is True).
    ``legacy_rounds``: rounds from before per-patient accounting charged to these patients.
    """

    photos: int
    patients: int
    budget: float
    delta: float
    spent: float
    rounds: int
    fixed: bool
    legacy_rounds: int = 0
    per_patient: list[PatientBudget] = field(default_factory=list)

    @property
    def remaining(self) -> float:
        """Budget left to the most-spent patient (what the next round may cost at most)."""
        return max(0.0, self.budget - self.spent)


@dataclass(frozen=True)
class Charge:
    """A charged round. ``units[i]``: the privacy unit (patient, after links) of photo i, 0..num_units-1."""

    epsilon_after: float      # the most-spent patient of the round, after it
    units: tuple[int, ...]
    num_units: int
    budget: float             # the device's per-patient budget now
    round_id: int


@dataclass
class _Unit:
    keys: frozenset[str]
    rows: list[int]
    patient: str
    history: list[tuple[float, float, int]]
    rounds: int
    legacy: int


@dataclass
class _Plan:
    keys: list[str]                       # per photo
    units: list[int]                      # per photo
    unit_list: list[_Unit]
    links: list[tuple[str, str, str]]     # new (a, b, image_sha256)
    new_patients: set[str]
    budget: float
    delta: float
    fixed: bool


def photo_set_id(image_hashes: Sequence[str]) -> str:
    """sha256 over the sorted, de-duplicated image sha256s (hex): names a photo set on this device only."""
    return hashlib.sha256("\n".join(sorted(set(image_hashes))).encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _chunks(items: Sequence, size: int = 500) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class Budget:
    """The accountant store of one device (the file is ``training.sqlite`` in ``home``).

    Args:
        home: EDGE_HOME.
    """

    def __init__(self, home: Path) -> None:
        Path(home).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(Path(home) / "training.sqlite", timeout=30, isolation_level=None)
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO device_privacy (id, salt) VALUES (1, ?)", (os.urandom(32).hex(),))
        self._salt = bytes.fromhex(self.db.execute("SELECT salt FROM device_privacy WHERE id=1").fetchone()[0])
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self._legacy = {"photo_sets", "set_photos", "rounds"} <= tables

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, taken before reading what it checks (two processes never both pass)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def patient_key(self, patient: str) -> str:
        """The device's private key of a clinic patient id (HMAC-SHA256 under the device's salt, hex)."""
        return hmac.new(self._salt, normalise_patient_id(patient).encode(), hashlib.sha256).hexdigest()

    # -- the device's budget and δ ----------------------------------------------------------
    def settings(self) -> tuple[float | None, float | None]:
        """(budget, δ) fixed by the device's first round, else the strictest of the rounds from
        before per-patient accounting, else (None, None)."""
        budget, delta = self.db.execute("SELECT budget, delta FROM device_privacy WHERE id=1").fetchone()
        if budget is None and self._legacy:
            budget, delta = self.db.execute("SELECT MIN(budget), MIN(delta) FROM photo_sets").fetchone()
        return budget, delta

    def _settle(self, budget: float | None, delta: float) -> tuple[float, float, bool]:
        """The budget and δ a round asking ``budget`` (None: the device's) and ``delta`` runs under.

        Raises:
            BudgetExceeded: a higher budget or another δ than the device's fixed ones.
            ValueError: a budget <= 0.
        """
        if budget is not None and not budget > 0:
            raise ValueError(f"budget must be > 0, got {budget!r}")
        fixed_budget, fixed_delta = self.settings()
        if fixed_budget is None:
            return float(DEFAULT_BUDGET if budget is None else budget), float(delta), False
        if budget is None:
            budget = fixed_budget
        if budget > fixed_budget + 1e-12:
            raise BudgetExceeded(f"this device's privacy budget is fixed at epsilon = {epsilon_str(fixed_budget)} "
                                 f"per patient since its first round: it cannot be raised to {budget:g}")
        if delta != fixed_delta:
            raise BudgetExceeded(f"this device's delta is fixed at {fixed_delta:g} since its first round: "
                                 f"it cannot be changed to {delta:g}")
        return min(float(budget), float(fixed_budget)), float(fixed_delta), True

    # -- planning a round -------------------------------------------------------------------
    def _links(self) -> dict[str, set[str]]:
        graph: dict[str, set[str]] = {}
        for a, b in self.db.execute("SELECT a, b FROM patient_links"):
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set()).add(a)
        return graph

    def _rows_by(self, sql: str, values: Sequence[str]) -> list[tuple]:
        out: list[tuple] = []
        for part in _chunks(list(values)):
            out += self.db.execute(sql.format(",".join("?" * len(part))), tuple(part)).fetchall()
        return out

    def _plan(self, photos: Sequence[LabelledPhoto], *, budget: float | None, delta: float,
              check_budget: bool) -> _Plan:
        keys = [self.patient_key(p.patient) for p in photos]
        known = {k for (k,) in self._rows_by("SELECT key FROM patients WHERE key IN ({})", sorted(set(keys)))}
        owners: dict[str, set[str]] = {}  # photo -> keys it was filed under before
        for k, sha in self._rows_by("SELECT key, image_sha256 FROM patient_photos WHERE image_sha256 IN ({})",
                                    sorted({p.sha256 for p in photos})):
            owners.setdefault(sha, set()).add(k)
        graph = self._links()
        links = []
        for key, photo in zip(keys, photos):
            for other in sorted(owners.get(photo.sha256, set()) - {key}):
                a, b = sorted((key, other))
                links.append((a, b, photo.sha256))
                graph.setdefault(a, set()).add(b)
                graph.setdefault(b, set()).add(a)
        component: dict[str, frozenset[str]] = {}
        for key in keys:  # connected components of the link graph
            if key in component:
                continue
            seen, todo = {key}, [key]
            while todo:
                for nxt in graph.get(todo.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            for k in seen:
                component[k] = frozenset(seen)
        all_keys = sorted(set().union(*(component[k] for k in keys)))
        key_rounds: dict[str, set[int]] = {}
        for k, rid in self._rows_by("SELECT key, round_id FROM round_patients WHERE key IN ({})", all_keys):
            key_rounds.setdefault(k, set()).add(rid)
        key_photos: dict[str, set[str]] = {}
        for k, sha in self._rows_by("SELECT key, image_sha256 FROM patient_photos WHERE key IN ({})", all_keys):
            key_photos.setdefault(k, set()).add(sha)
        for k, p in zip(keys, photos):
            key_photos.setdefault(k, set()).add(p.sha256)
        params = {rid: (s, q, t) for rid, s, q, t in
                  self.db.execute("SELECT id, noise_multiplier, sample_rate, steps FROM patient_rounds")}
        legacy_of_photo: dict[str, set[int]] = {}
        legacy_params: dict[int, tuple[float, float, int]] = {}
        if self._legacy:
            every_photo = sorted(set().union(*key_photos.values()))
            for sha, rid in self._rows_by("SELECT sp.image_sha256, r.id FROM set_photos sp JOIN rounds r "
                                          "ON r.set_id = sp.set_id WHERE sp.image_sha256 IN ({})", every_photo):
                legacy_of_photo.setdefault(sha, set()).add(rid)
            legacy_params = {rid: (s, q, t) for rid, s, q, t in
                             self.db.execute("SELECT id, noise_multiplier, sample_rate, steps FROM rounds")}
        if check_budget:
            budget, delta, fixed = self._settle(budget, delta)
        else:
            stored = self.settings()
            fixed = stored[0] is not None
            budget, delta = stored if fixed else (DEFAULT_BUDGET if budget is None else budget, delta)
        unit_of: dict[frozenset[str], int] = {}
        units, unit_list = [], []
        for key, photo in zip(keys, photos):
            comp = component[key]
            if comp not in unit_of:
                rounds = sorted(set().union(*(key_rounds.get(k, set()) for k in comp)))
                comp_photos = set().union(*(key_photos.get(k, set()) for k in comp))
                legacy = sorted(set().union(*(legacy_of_photo.get(s, set()) for s in comp_photos)))
                history = [params[r] for r in rounds] + [legacy_params[r] for r in legacy]
                unit_of[comp] = len(unit_list)
                unit_list.append(_Unit(comp, [], photo.patient, history, len(rounds) + len(legacy), len(legacy)))
            units.append(unit_of[comp])
            unit_list[unit_of[comp]].rows.append(photo.row)
        return _Plan(keys, units, unit_list, links, set(keys) - known, float(budget), float(delta), fixed)

    def _spend(self, plan: _Plan, extra: tuple[float, float, int] | None) -> list[float]:
        """ε of each unit's history (plus ``extra``), computed once per distinct history."""
        cache: dict[tuple, float] = {}
        out = []
        for unit in plan.unit_list:
            history = tuple(unit.history) + ((extra,) if extra else ())
            if history not in cache:
                cache[history] = epsilon_of_history(history, delta=plan.delta)
            out.append(cache[history])
        return out

    def _check(self, plan: _Plan, noise_multiplier: float, sample_rate: float, steps: int,
               max_patients: int | None) -> float:
        if max_patients is not None:
            total = self.db.execute("SELECT COUNT(*) FROM patients").fetchone()[0] + len(plan.new_patients)
            if total > max_patients:
                raise BudgetExceeded(f"this device would hold {total} patients, over its public cap max_patients = "
                                     f"{max_patients} (delta = {plan.delta:g} must stay below 1/patients): "
                                     f"no training done")
        before = self._spend(plan, None)
        after = self._spend(plan, (float(noise_multiplier), float(sample_rate), int(steps)))
        over = [(u, b, a) for u, b, a in zip(plan.unit_list, before, after) if a > plan.budget]
        if over:
            u, b, a = max(over, key=lambda x: x[2])
            rows = ("row " if len(u.rows) == 1 else "rows ") + ", ".join(map(str, u.rows[:5])) + \
                (", ..." if len(u.rows) > 5 else "")
            more = f" (and {len(over) - 1} more patients)" if len(over) > 1 else ""
            raise BudgetExceeded(
                f"this round would take patient {u.patient!r} ({rows}) to epsilon = {epsilon_str(a)}, over its "
                f"budget {epsilon_str(plan.budget)} on this device (spent {epsilon_str(b)} in {u.rounds} rounds)"
                f"{more}: no training done; remove those patients' rows or ask a smaller epsilon")
        return max(after) if after else 0.0

    # -- the public methods -----------------------------------------------------------------
    def check(self, photos: Sequence[LabelledPhoto], *, noise_multiplier: float, sample_rate: float, steps: int,
              budget: float | None = None, delta: float = DEFAULT_DELTA, max_patients: int | None = None) -> float:
        """The most-spent patient's ε after this round, charging nothing.

        Raises:
            BudgetExceeded: a patient would pass the budget, the budget would be raised or δ
            changed, or the device would hold more than ``max_patients`` patients.
        """
        plan = self._plan(photos, budget=budget, delta=delta, check_budget=True)
        return self._check(plan, noise_multiplier, sample_rate, steps, max_patients)

    def record(self, photos: Sequence[LabelledPhoto], *, mode: str, noise_multiplier: float, sample_rate: float,
               steps: int, clipping_norm: float, model_version: int | None, seeded: bool = False,
               budget: float | None = None, delta: float = DEFAULT_DELTA,
               max_patients: int | None = None) -> Charge:
        """Charge a round to every patient of ``photos`` (call before its result is used).

        Checks as ``check`` does, inside the same write transaction (nothing recorded when it
        raises); the first round fixes the device's budget (``budget``; None: DEFAULT_BUDGET) and
        δ; later, None keeps the device's budget and a smaller one lowers it for good.

        Returns:
            Charge: ε after, the privacy unit of each photo, the budget now.

        Raises:
            BudgetExceeded, ValueError (a budget <= 0).
        """
        with self._write():
            plan = self._plan(photos, budget=budget, delta=delta, check_budget=True)
            after = self._check(plan, noise_multiplier, sample_rate, steps, max_patients)
            now = _now()
            self.db.execute("UPDATE device_privacy SET budget=?, delta=?, fixed=COALESCE(fixed, ?) WHERE id=1",
                            (plan.budget, plan.delta, now))
            self.db.executemany("INSERT OR IGNORE INTO patients VALUES (?, ?)", [(k, now) for k in set(plan.keys)])
            self.db.executemany("INSERT OR IGNORE INTO patient_photos VALUES (?, ?)",
                                [(k, p.sha256) for k, p in zip(plan.keys, photos)])
            self.db.executemany("INSERT OR IGNORE INTO patient_links VALUES (?, ?, ?, ?)",
                                [(a, b, sha, now) for a, b, sha in plan.links])
            cur = self.db.execute(
                "INSERT INTO patient_rounds (time, mode, noise_multiplier, sample_rate, steps, clipping_norm, "
                "model_version, seeded, patients) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, mode, float(noise_multiplier), float(sample_rate), int(steps), float(clipping_norm),
                 model_version, int(bool(seeded)), len(plan.unit_list)))
            self.db.executemany("INSERT INTO round_patients VALUES (?, ?)",
                                [(cur.lastrowid, k) for k in sorted(set(plan.keys))])
        return Charge(after, tuple(plan.units), len(plan.unit_list), plan.budget, cur.lastrowid)

    def status(self, photos: Sequence[LabelledPhoto], *, budget: float | None = None,
               delta: float = DEFAULT_DELTA) -> BudgetStatus:
        """Where the patients of ``photos`` stand (nothing charged). ``budget`` (None: DEFAULT_BUDGET)
        and ``delta`` are shown until the device's first round fixes them."""
        plan = self._plan(photos, budget=budget, delta=delta, check_budget=False)
        spent = self._spend(plan, None)
        per = [PatientBudget(u.patient, tuple(u.rows), s, u.rounds) for u, s in zip(plan.unit_list, spent)]
        top = max(per, key=lambda p: (p.spent, p.rounds)) if per else None
        return BudgetStatus(len(photos), len(per), plan.budget, plan.delta, top.spent if top else 0.0,
                            top.rounds if top else 0, plan.fixed, max((u.legacy for u in plan.unit_list), default=0),
                            per)
