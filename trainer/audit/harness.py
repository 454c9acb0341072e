"""One audited training run: a mode at a target ε, with m gradient canaries, and the bound it gives.

Threat model of the bound (white-box, one run): the auditor chooses m canary patients' gradients
(Dirac vectors of norm C, trainer/audit/canaries.py), each canary is in the data with probability
1/2, and the auditor then sees
  * DP modes: every privatised sum the mechanism releases (each round's secure-aggregation sum in
    dopamine, each step's noised sum in central-dp, each hospital's noised local-step sum in
    fl-parallel-dp): exactly what ε is accounted for. Score of a canary: its coordinate, summed
    over the sums its hospital took part in.
  * non-private modes: the final model (with SGD, the weight change is linear in the gradients).
    Score: how far its coordinate moved against its gradient.
The run itself is the product's code: the mode's data pipeline, Poisson sampling and noise from
the OS CSPRNG, σ calibration, the ledger. The audit forces SGD and no augmentation (post-
processing and data handling: neither changes ε).

`test_only_break` exists for the audit's own tests and benchmark, never as a product flag:
"noise-off" zeroes the noise shares while the ledger still claims ε; "known-seed" draws the noise
from a seed (the product's test-only --noise-seed) that the auditor knows, replays and subtracts.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from trainer.audit.bounds import audit_bound
from trainer.audit.canaries import CanaryClipper, CanaryGradientHooks, SumRecorder, draw_canaries, with_canaries
from trainer.config import TrainConfig, resolve, validate
from trainer.dp.noise import gaussian_noise, poisson_sample, seeded_generator

BREAKS = ("noise-off", "known-seed")
KNOWN_SEED = 1234   # the "leaked" noise seed of the known-seed break
AUDIT_OVERRIDES = dict(optimizer="sgd", learning_rate=0.01, momentum=0.9, augment=False, dropout=0.0)


@dataclass
class AuditResult:
    """What one audit found. `epsilon` is the accountant's claim as the mode reports it (rounded up)."""

    mode: str
    target_epsilon: float | None
    epsilon: float | None
    delta: float | None
    accountant: str | None
    noise_multiplier: float | None
    sample_rate: float | None
    steps: int
    canaries: int
    members: int
    observation: str
    epsilon_lower: float
    confidence: float
    guesses: int
    correct: int
    broken: str | None
    seconds: float
    scores: np.ndarray = field(repr=False)
    included: np.ndarray = field(repr=False)

    @property
    def flagged(self) -> bool:
        """True when the empirical lower bound exceeds the claim: the claim is refuted."""
        claim = math.inf if self.epsilon is None else self.epsilon
        return self.epsilon_lower > claim

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("scores", "included")}
        return {**data, "flagged": self.flagged}


def audit_config(mode: str, *, data: str, weights: str | None, weights_public: bool = False,
                 target_epsilon: float | None, epochs: int,
                 sample_rate: float, hospitals: int, image_size: int = 32, delta: float = 1e-5,
                 seed: int = 0, device: str = "cpu", threads: int | None = None,
                 max_patients: int | None = None) -> TrainConfig:
    """The audited run's config: the demo preset, SGD, no augmentation; private modes at rate q
    for `epochs` passes (dopamine: epochs/q rounds), non-private modes for `epochs` epochs/rounds.

    central-dp's and fl-parallel-dp's batch sizes are set by `run_audit` once the canaries are in.
    """
    overrides = dict(AUDIT_OVERRIDES, data=data, out="", weights=weights, weights_public=weights_public,
                     target_epsilon=target_epsilon, hospitals=hospitals, image_size=image_size, delta=delta,
                     seed=seed, device=device, threads=threads, max_patients=max_patients, rounds=epochs,
                     local_epochs=1, client_fraction=1.0, sample_rate=sample_rate)
    if mode == "dopamine":
        overrides["rounds"] = max(1, round(epochs / sample_rate))
    return resolve(mode, preset="demo", overrides=overrides)


def _with_batch_sizes(config: TrainConfig, hospitals) -> TrainConfig:
    """central-dp: expected batch q·N; fl-parallel-dp: each hospital's q·N_k; N counts canaries."""
    total = sum(h.num_patients for h in hospitals)
    if config.mode == "central-dp":
        config = dataclasses.replace(config, batch_size=max(1, round(config.sample_rate * total)))
    elif config.mode == "fl-parallel-dp":
        config = dataclasses.replace(config, local_batch_size=max(1, round(config.sample_rate * total / len(hospitals))))
    validate(config)
    return config


def _tag_hospitals(mode, recorder: SumRecorder) -> None:
    """fl-parallel-dp: tag each local step's sum with its hospital (a canary is scored on its own)."""
    original = mode.local_training

    def tagged(k: int):
        recorder.hospital = k
        try:
            return original(k)
        finally:
            recorder.hospital = None
    mode.local_training = tagged


def _replayed_noise(mode, sums: int, coordinates: torch.Tensor) -> np.ndarray:
    """(sums, m): the known-seed break's noise at the canaries' coordinates, as the auditor replays it.

    Each seeded hospital generator draws its Poisson sample, then its noise share, every step
    (trainer/dp/noise.py); the auditor knows the seed, the declared N_k and the share's std, and
    replays the product's own draws.
    """
    generators = [seeded_generator(KNOWN_SEED, k + 1) for k in range(len(mode.hospitals))]
    size = sum(p.numel() for p in mode.params)
    out = np.zeros((sums, len(coordinates)))
    for t in range(sums):
        total = torch.zeros(size, dtype=torch.float32)
        for generator, data in zip(generators, mode.hospitals):
            poisson_sample(data.num_patients, sample_rate=mode.sample_rate, generator=generator)
            total += gaussian_noise(size, std=mode.share_std, generator=generator)
        out[t] = total[coordinates].double().numpy()
    return out


def run_audit(config: TrainConfig, *, canaries: int, confidence: float = 0.95, canary_seed: int | None = None,
              test_only_break: str | None = None) -> AuditResult:
    """Train `config` once with m canaries and bound ε from the canaries' scores.

    Args:
        config: from `audit_config` (augmentation is forced off: it would blank the canary rows).
        canaries: m.
        confidence: of the lower bound.
        canary_seed: None: the canaries' coordinates and membership from OS entropy (the auditor's
            secret); an int: repeatable (tests).
        test_only_break: None, or one of BREAKS (tests and the audit benchmark only; module docstring).
    Raises:
        ValueError: a bad setting (from the trainer), or a break on a mode it does not apply to.
    """
    from trainer.model import build_model
    from trainer.modes import make_mode
    from trainer.modes.fedavg import ParallelDPMode
    from trainer.prepare import prepare
    from trainer.warm_start import read_warm_start
    if test_only_break is not None and (test_only_break not in BREAKS or config.mode not in ("central-dp", "dopamine")):
        raise ValueError(f"test_only_break must be one of {BREAKS} on central-dp or dopamine, got "
                         f"{test_only_break!r} on {config.mode}")
    config = dataclasses.replace(config, augment=False,
                                 noise_seed=KNOWN_SEED if test_only_break == "known-seed" else config.noise_seed)
    started = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.seed is not None:
        torch.manual_seed(config.seed)
    warm = read_warm_start(config.weights, declared_public=config.weights_public, private_run=config.private)
    data = prepare(config)
    model = build_model(5, weights=config.weights, dropout=config.dropout).to(config.device)
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    drawn = draw_canaries(canaries, num_params=num_params, hospitals=len(data.hospitals),
                          norm=config.clipping_norm, seed=canary_seed)
    hospitals = with_canaries(data.hospitals, drawn)
    config = _with_batch_sizes(config, hospitals)
    mode = make_mode(config.mode, model=model, hospitals=hospitals, config=config, augment=None, priors=warm.priors)
    recorder = None
    if config.private:
        mode.clipper = CanaryClipper(mode.clipper, drawn)
        recorder = mode.settings = SumRecorder(mode.settings, drawn.coordinates)
        if isinstance(mode, ParallelDPMode):
            _tag_hospitals(mode, recorder)
        if test_only_break == "noise-off":
            mode.share_std = 0.0
    else:
        CanaryGradientHooks(model, drawn)
    coordinates = drawn.coordinates.to(mode.weights().device)
    start = mode.weights()[coordinates].double().cpu()
    for round_index in range(config.rounds):
        if config.private and not mode.can_continue():
            break
        mode.run_round(round_index)
    if recorder is None:
        scores, observation = (start - mode.weights()[coordinates].double().cpu()).numpy(), "final model"
    else:
        sums = np.stack([values for _, values in recorder.sums])
        if test_only_break == "known-seed":
            sums = sums - _replayed_noise(mode, len(sums), drawn.coordinates)
        tags = np.array([-1 if tag is None else tag for tag, _ in recorder.sums])[:, None]
        own = (tags == -1) | (tags == drawn.hospital[None, :])
        scores, observation = (sums * own).sum(axis=0), "released sums"
    bound = audit_bound(scores, drawn.included, delta=config.delta, confidence=confidence)
    privacy = mode.privacy() or {}
    return AuditResult(mode=config.mode, target_epsilon=config.target_epsilon, epsilon=privacy.get("epsilon"),
                       delta=privacy.get("delta", config.delta), accountant=privacy.get("accountant"),
                       noise_multiplier=getattr(mode, "noise_multiplier", None),
                       sample_rate=getattr(mode, "sample_rate", None) or config.sample_rate,
                       steps=int(privacy.get("steps", 0)), canaries=len(drawn), members=int(drawn.included.sum()),
                       observation=observation, epsilon_lower=bound["epsilon_lower"], confidence=confidence,
                       guesses=bound["guesses"], correct=bound["correct"], broken=test_only_break,
                       seconds=round(time.time() - started, 1), scores=scores, included=drawn.included)
