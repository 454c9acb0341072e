"""One on-device training round: labelled photos -> features -> DP-SGD of the head -> result.

Steps: read the labels; compute each photo's ``features`` and ``logits`` with the installed
model (the int8 artifact, as the device has it); register the photo set with the accountant;
calibrate σ so this round alone costs the asked ε; charge the round to the photo set's budget
BEFORE training (a crash never under-counts); train the head's change; then either keep it as
the personal head (mode "personal", never leaves the device) or queue the update for the user's
approval (mode "federated").

What trains is the change ΔW, Δb of the head, from zero, on top of the installed model's own
logits (``head_training.head_logits``): the int8 model's head weights are not readable, and the
hub adds the change to the fp32 head it keeps.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_client.budget import DEFAULT_BUDGET, DEFAULT_DELTA, Budget, BudgetExceeded
from edge_client.head_training import CryptoRandom, DPConfig, HeadParams, SeededRandom, accuracy, train_head
from edge_client.labels import read_labels
from edge_client.preprocess import load_image, preprocess_image, PreprocessConfig
from edge_client.rdp import calibrate_noise_multiplier
from edge_client.fileio import atomic_write
from edge_client.updates import UpdateQueue, build_payload

__all__ = ["RoundSettings", "RoundResult", "MODES", "run_round", "extract_features", "PersonalHead",
           "load_personal_head", "save_personal_head"]

MODES = ("personal", "federated")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RoundSettings:
    """Public constants of a round (the same on every device; none depends on the photos).

    steps: DP-SGD steps. expected_batch: q = min(1, expected_batch / patients).
    clipping_norm: C per patient. learning_rate: SGD step. delta: δ (must be < 1/patients).
    budget: the photo set's total ε, fixed at its first round.
    """

    steps: int = 50
    expected_batch: float = 30.0
    clipping_norm: float = 1.0
    learning_rate: float = 0.1
    delta: float = DEFAULT_DELTA
    budget: float = DEFAULT_BUDGET


@dataclass
class RoundResult:
    mode: str
    base_version: int
    set_id: str
    photos: int
    patients: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    clipping_norm: float
    learning_rate: float
    epsilon_round: float      # what this round alone costs
    epsilon_spent: float      # the photo set's ε after it (all rounds touching its photos)
    budget: float
    delta: float
    update_id: int | None     # the queued update (federated), else None
    accuracy_before: float    # on the device's own photos; shown locally, never uploaded
    accuracy_after: float
    seconds: float

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


def _personal_path(home: Path) -> Path:
    return Path(home) / "personal" / "head.json"


def save_personal_head(home: Path, head: PersonalHead) -> None:
    """Write the personal head atomically (replaces the previous one)."""
    data = {"base_version": head.base_version, "set_id": head.set_id, "epsilon": head.epsilon,
            "delta": head.delta, "created": head.created, "delta_weight": head.params.weight.tolist(),
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
                            d["created"])
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


def run_round(home: Path, installed, runtime, labels_csv: str | Path | list, *, mode: str, epsilon: float,
              settings: RoundSettings = RoundSettings(), seed: int | None = None,
              progress: Progress | None = None) -> RoundResult:
    """Run one round (see the module docstring).

    Args:
        home: EDGE_HOME. installed: the active ``store.Installed``. runtime: its loaded runtime.
        labels_csv: ``image,grade[,patient]`` (or its ``read_labels`` result). mode: "personal" or "federated".
        epsilon: what this round alone may cost (σ is calibrated to it).
        settings: public constants. seed: tests only (seeded noise is not private).
        progress: progress(stage, done, total), stage "features" then "training".

    Raises:
        LabelsError, ImageError, BudgetExceeded (nothing trained, nothing charged), ValueError
        (bad mode/ε, or δ not below 1/patients).
    """
    start = time.perf_counter()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    if epsilon > settings.budget:
        raise BudgetExceeded(f"epsilon {epsilon:g} for one round is over the budget {settings.budget:g}")
    photos = labels_csv if isinstance(labels_csv, list) else read_labels(labels_csv)
    index = {p: i for i, p in enumerate(dict.fromkeys(ph.patient for ph in photos))}
    patients = np.array([index[ph.patient] for ph in photos])
    labels = np.array([ph.grade for ph in photos])
    num_patients = len(index)
    if not settings.delta < 1.0 / num_patients:
        raise ValueError(f"delta {settings.delta:g} must be below 1/patients = {1 / num_patients:.3g}")
    sample_rate = min(1.0, settings.expected_batch / num_patients)

    budget = Budget(home)
    try:
        set_id = budget.register([ph.sha256 for ph in photos], budget=settings.budget, delta=settings.delta)
        sigma = calibrate_noise_multiplier(target_epsilon=epsilon, sample_rate=sample_rate, steps=settings.steps,
                                           delta=settings.delta)
        budget.check(set_id, noise_multiplier=sigma, sample_rate=sample_rate, steps=settings.steps)
        features, base_logits = extract_features(runtime, installed.manifest, [ph.path for ph in photos], progress)
        spent = budget.record(set_id, mode=mode, noise_multiplier=sigma, sample_rate=sample_rate,
                              steps=settings.steps, clipping_norm=settings.clipping_norm,
                              model_version=installed.version)
    finally:
        budget.close()

    config = DPConfig(noise_multiplier=sigma, sample_rate=sample_rate, steps=settings.steps,
                      clipping_norm=settings.clipping_norm, learning_rate=settings.learning_rate)
    zero = HeadParams(np.zeros((base_logits.shape[1], features.shape[1])), np.zeros(base_logits.shape[1]))
    rng = CryptoRandom() if seed is None else SeededRandom(seed)
    change = train_head(zero, features, labels, patients, config=config, rng=rng, base_logits=base_logits,
                        progress=(lambda d, t: progress("training", d, t)) if progress else None)
    before = accuracy(zero, features, labels, base_logits)
    after = accuracy(change, features, labels, base_logits)

    update_id = None
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if mode == "personal":
        save_personal_head(home, PersonalHead(change, installed.version, set_id, spent, settings.delta, created))
    else:
        payload = build_payload(base_version=installed.version, delta_weight=change.weight, delta_bias=change.bias,
                                steps=settings.steps, epsilon=spent, delta=settings.delta, noise_multiplier=sigma,
                                sample_rate=sample_rate, clipping_norm=settings.clipping_norm,
                                learning_rate=settings.learning_rate)
        queue = UpdateQueue(home)
        try:
            update_id = queue.add(payload, photos=len(photos))
        finally:
            queue.close()
    return RoundResult(mode, installed.version, set_id, len(photos), num_patients, sigma, sample_rate,
                       settings.steps, settings.clipping_norm, settings.learning_rate, epsilon, spent,
                       settings.budget, settings.delta, update_id, before, after, time.perf_counter() - start)
