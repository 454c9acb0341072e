"""One on-device training round: labelled photos -> features -> DP-SGD of the head -> result.

Steps: read the labels (a patient id on every row); check the round against each patient's
budget (``budget.Budget``: one accountant per patient, composing across photo sets, visits and
files); calibrate σ so this round alone costs the asked ε, from public constants only; compute
each photo's ``features`` and ``logits`` with the installed model (the int8 artifact, as the
device has it); charge the round to every patient in it BEFORE training (a crash never
under-counts); train the head's change; then either keep it as the personal head (mode
"personal", never leaves the device) or queue the update for the user's approval (mode
"federated").

What the upload may reveal is fixed by ``RoundSettings`` alone: q, the step divisor, σ (from the
asked ε, q, steps and δ), C and the learning rate are the same for a clinic with 10 patients or
10 000, so neither the payload nor the update's noise level tells the set's size.

What trains is the change ΔW, Δb of the head, from zero, on top of the installed model's own
logits (``head_training.head_logits``): the int8 model's head weights are not readable, and the
hub adds the change to the fp32 head it keeps.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edge_client.budget import DEFAULT_DELTA, Budget, BudgetExceeded, photo_set_id
from edge_client.head_training import CryptoRandom, DPConfig, HeadParams, SeededRandom, accuracy, train_head
from edge_client.labels import read_labels
from edge_client.preprocess import load_image, preprocess_image, PreprocessConfig
from edge_client.rdp import calibrate_noise_multiplier, compute_epsilon
from edge_client.fileio import atomic_write
from edge_client.updates import UpdateQueue, build_payload

__all__ = ["RoundSettings", "RoundResult", "MODES", "run_round", "extract_features", "PersonalHead",
           "load_personal_head", "save_personal_head"]

MODES = ("personal", "federated")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RoundSettings:
    """Public constants of a round: the same on every device, none depends on the photos.

    steps: DP-SGD steps. sample_rate: q, each patient's Poisson rate per step (a constant, not
    derived from the number of patients). batch_divisor: each step's noised sum is divided by it
    (a constant; q·N would let the update's noise level reveal N). clipping_norm: C per patient.
    learning_rate: SGD step. delta: δ, below 1/max_patients. max_patients: the public cap on
    patients a device may hold (a round that would pass it is refused). budget: each patient's
    total ε on this device; None: the device's (fixed at its first round; DEFAULT_BUDGET then).

    Raises:
        ValueError: a value outside its range, or δ not below 1/max_patients (names the field).
    """

    steps: int = 50
    sample_rate: float = 0.5
    batch_divisor: float = 16.0
    clipping_norm: float = 1.0
    learning_rate: float = 0.1
    delta: float = DEFAULT_DELTA
    max_patients: int = 10_000
    budget: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_patients, bool) or not isinstance(self.max_patients, int) or self.max_patients < 1:
            raise ValueError(f"max_patients must be an integer >= 1, got {self.max_patients!r}")
        if not 0 < self.delta < 1.0 / self.max_patients:
            raise ValueError(f"delta {self.delta!r} must be above 0 and below 1/max_patients = "
                             f"{1.0 / self.max_patients:g} (max_patients: the public cap on patients per device)")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if self.budget is not None and not self.budget > 0:
            raise ValueError(f"budget must be > 0 or None, got {self.budget!r}")
        DPConfig(noise_multiplier=0.0, sample_rate=self.sample_rate, steps=self.steps,
                 clipping_norm=self.clipping_norm, learning_rate=self.learning_rate,
                 batch_divisor=self.batch_divisor)  # the remaining range checks


@dataclass
class RoundResult:
    """One round. ``patients``: privacy units trained on (patient ids, joined where linked).
    ``epsilon_round``: this round alone; ``epsilon_spent``: the most-spent patient of the set
    after it, over every round of this device; ``budget``: each patient's cap on this device.
    ``model_privacy``: the installed model's own privacy block (its ε adds to the device's for a
    patient also in its training set). ``seeded``: a test round (no DP guarantee)."""

    mode: str
    base_version: int
    set_id: str
    photos: int
    patients: int
    noise_multiplier: float
    sample_rate: float
    batch_divisor: float
    steps: int
    clipping_norm: float
    learning_rate: float
    epsilon_round: float
    epsilon_spent: float
    budget: float
    delta: float
    max_patients: int
    update_id: int | None     # the queued update (federated), else None
    accuracy_before: float    # on the device's own photos; shown locally, never uploaded
    accuracy_after: float
    seconds: float
    seeded: bool = False
    model_privacy: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PersonalHead:
    """The device's own head change, valid only for the model version it was trained on."""

    params: HeadParams
    base_version: int
    set_id: str
    epsilon: float
    delta: float
    created: str
    seeded: bool = False


def _personal_path(home: Path) -> Path:
    return Path(home) / "personal" / "head.json"


def save_personal_head(home: Path, head: PersonalHead) -> None:
    """Write the personal head atomically (replaces the previous one)."""
    data = {"base_version": head.base_version, "set_id": head.set_id, "epsilon": head.epsilon,
            "delta": head.delta, "created": head.created, "seeded": head.seeded,
            "delta_weight": head.params.weight.tolist(),
            "delta_bias": head.params.bias.tolist()}
    atomic_write(_personal_path(home), json.dumps(data).encode())


def load_personal_head(home: Path) -> PersonalHead | None:
    """The stored personal head, or None (absent or unreadable: diagnosis falls back to the shared one)."""
    try:
        d = json.loads(_personal_path(home).read_text())
        params = HeadParams(np.asarray(d["delta_weight"], np.float64), np.asarray(d["delta_bias"], np.float64))
        if params.weight.shape != (5, 512) or params.bias.shape != (5,):
            return None
        return PersonalHead(params, int(d["base_version"]), d["set_id"], float(d["epsilon"]), float(d["delta"]),
                            d["created"], bool(d.get("seeded", False)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def extract_features(runtime, manifest: dict, paths: list[Path], progress: Progress | None = None):
    """(features (N, F), logits (N, C)) of each photo with the installed model's runtime."""
    cfg = PreprocessConfig.from_dict(manifest["preprocess"])
    feats, logits = [], []
    for i, path in enumerate(paths):
        img = load_image(path, max_pixels=cfg.max_pixels)
        lg, ft = runtime.run(preprocess_image(img, cfg)[None])
        feats.append(ft[0])
        logits.append(lg[0])
        if progress:
            progress("features", i + 1, len(paths))
    return np.asarray(feats, np.float64), np.asarray(logits, np.float64)


def _model_privacy(manifest: dict) -> dict:
    p = manifest.get("privacy") or {}
    return {k: p[k] for k in ("epsilon", "delta", "accountant", "seeded", "test_build") if k in p}


def run_round(home: Path, installed, runtime, labels_csv: str | Path | list, *, mode: str, epsilon: float,
              settings: RoundSettings = RoundSettings(), seed: int | None = None,
              progress: Progress | None = None) -> RoundResult:
    """Run one round (see the module docstring).

    Args:
        home: EDGE_HOME. installed: the active ``store.Installed``. runtime: its loaded runtime.
        labels_csv: ``image,grade,patient`` (or its ``read_labels`` result). mode: "personal" or "federated".
        epsilon: what this round alone may cost each patient in it (σ is calibrated to it).
        settings: public constants. seed: tests only: the noise and sampling become predictable,
            the round is marked ``seeded`` and its federated update is queued rejected (never uploaded).
        progress: progress(stage, done, total), stage "features" then "training".

    Raises:
        LabelsError, ImageError, BudgetExceeded (a patient over budget, a raised budget, the
        device's patient cap: nothing trained, nothing charged), ValueError (bad mode/ε).
    """
    start = time.perf_counter()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    if settings.budget is not None and epsilon > settings.budget:
        raise BudgetExceeded(f"epsilon {epsilon:g} for one round is over the budget {settings.budget:g}")
    photos = labels_csv if isinstance(labels_csv, list) else read_labels(labels_csv)
    q, steps, delta = settings.sample_rate, settings.steps, settings.delta
    sigma = calibrate_noise_multiplier(target_epsilon=epsilon, sample_rate=q, steps=steps, delta=delta)
    epsilon_round = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)
    limits = dict(budget=settings.budget, delta=delta, max_patients=settings.max_patients)
    budget = Budget(home)
    try:
        budget.check(photos, noise_multiplier=sigma, sample_rate=q, steps=steps, **limits)
        features, base_logits = extract_features(runtime, installed.manifest, [ph.path for ph in photos], progress)
        charge = budget.record(photos, mode=mode, noise_multiplier=sigma, sample_rate=q, steps=steps,
                               clipping_norm=settings.clipping_norm, model_version=installed.version,
                               seeded=seed is not None, **limits)
    finally:
        budget.close()

    config = DPConfig(noise_multiplier=sigma, sample_rate=q, steps=steps, clipping_norm=settings.clipping_norm,
                      learning_rate=settings.learning_rate, batch_divisor=settings.batch_divisor)
    labels = np.array([ph.grade for ph in photos])
    units = np.array(charge.units)
    zero = HeadParams(np.zeros((base_logits.shape[1], features.shape[1])), np.zeros(base_logits.shape[1]))
    rng = CryptoRandom() if seed is None else SeededRandom(seed)
    change = train_head(zero, features, labels, units, config=config, rng=rng, base_logits=base_logits,
                        progress=(lambda d, t: progress("training", d, t)) if progress else None)
    before = accuracy(zero, features, labels, base_logits)
    after = accuracy(change, features, labels, base_logits)

    set_id = photo_set_id([ph.sha256 for ph in photos])
    update_id = None
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if mode == "personal":
        save_personal_head(home, PersonalHead(change, installed.version, set_id, charge.epsilon_after, delta, created,
                                              seed is not None))
    else:
        payload = build_payload(base_version=installed.version, delta_weight=change.weight, delta_bias=change.bias,
                                steps=steps, sample_rate=q, batch_divisor=settings.batch_divisor,
                                noise_multiplier=sigma, clipping_norm=settings.clipping_norm,
                                learning_rate=settings.learning_rate, epsilon=epsilon_round, delta=delta,
                                epsilon_budget=charge.budget, max_patients=settings.max_patients,
                                seeded=seed is not None)
        queue = UpdateQueue(home)
        try:
            update_id = queue.add(payload, photos=len(photos))
        finally:
            queue.close()
    return RoundResult(mode, installed.version, set_id, len(photos), charge.num_units, sigma, q,
                       settings.batch_divisor, steps, settings.clipping_norm, settings.learning_rate, epsilon_round,
                       charge.epsilon_after, charge.budget, delta, settings.max_patients, update_id, before, after,
                       time.perf_counter() - start, seed is not None, _model_privacy(installed.manifest))
