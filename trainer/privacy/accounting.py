"""ε for DP-SGD, from Opacus' accountants, never rounded in the user's favour.

`PrivacyLedger` is the one accountant of a run (or of one hospital): it is checkpointed with the
run and restored on resume, so ε is never reset. It refuses a step that would exceed the budget.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from edge_client.privacy_figures import round_up

ACCOUNTANTS = ("rdp", "prv")


def _check(noise_multiplier: float, sample_rate: float, delta: float, accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    if not noise_multiplier > 0:
        raise ValueError(f"noise multiplier must be > 0 for a finite epsilon, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample rate q must be in (0, 1], got {sample_rate}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def _new_accountant(name: str):
    from opacus.accountants import PRVAccountant, RDPAccountant
    return RDPAccountant() if name == "rdp" else PRVAccountant()


@functools.lru_cache(maxsize=256)
def _rdp_of_one_step(noise_multiplier: float, sample_rate: float):
    """Opacus' RDP of one sampled-Gaussian step at its default orders (read-only array).

    Cached because ε is asked for every round (a hospital checks its budget before it trains) and
    this is ~99 % of its cost (0.1-0.25 s a call); RDP composes linearly in the steps.
    """
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as analysis
    values = analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1,
                                  orders=RDPAccountant.DEFAULT_ALPHAS)
    values.setflags(write=False)
    return values


def _epsilon_of(opacus_accountant, delta: float) -> float:
    if not opacus_accountant.history:
        return 0.0
    from opacus.accountants import RDPAccountant
    if type(opacus_accountant) is not RDPAccountant:
        return float(opacus_accountant.get_epsilon(delta=delta))
    # RDPAccountant.get_privacy_spent, term for term (compute_rdp is "RDP of one step x steps"),
    # with the one-step RDP cached: the same floating-point operations, the same ε.
    from opacus.accountants.analysis import rdp as analysis
    rdp = sum([_rdp_of_one_step(sigma, q) * steps for sigma, q, steps in opacus_accountant.history])
    epsilon, _ = analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
    return float(epsilon)


def compute_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                    accountant: str = "rdp") -> float:
    """ε (unrounded upper bound) of `steps` compositions of the sampled Gaussian mechanism.

    Raises:
        ValueError: on a setting outside the mechanism's domain (names the argument).
    """
    _check(noise_multiplier, sample_rate, delta, accountant)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    acc = _new_accountant(accountant)
    if steps:
        acc.history = [(noise_multiplier, sample_rate, int(steps))]
    return _epsilon_of(acc, delta)


def calibrate_noise_multiplier(*, target_epsilon: float, sample_rate: float, steps: int, delta: float,
                               accountant: str = "rdp", priors: list[list] | None = None) -> float:
    """Smallest σ (to 1 %) whose ε after `steps` more steps, composed with each prior history
    (a warm start's), stays ≤ target_epsilon.

    Raises:
        ValueError: if the target cannot be reached (names q, steps, δ and what the priors spent).
    """
    if not target_epsilon > 0:
        raise ValueError(f"target epsilon must be > 0, got {target_epsilon}")
    _check(1.0, sample_rate, delta, accountant)
    priors = [list(p) for p in (priors or [[]])]

    def epsilon(sigma: float) -> float:
        return max(_epsilon_of(_accountant_with(accountant, [*prior, (sigma, sample_rate, steps)]), delta)
                   for prior in priors)

    spent = max(_epsilon_of(_accountant_with(accountant, prior), delta) for prior in priors)
    if spent >= target_epsilon:
        raise ValueError(f"target epsilon {target_epsilon} is unreachable: the warm start already spent "
                         f"epsilon {round_up(spent)} at delta {delta}")
    if not any(priors):
        from opacus.accountants.utils import get_noise_multiplier
        try:
            sigma = get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                         sample_rate=sample_rate, steps=steps, accountant=accountant)
        except ValueError as exc:
            raise ValueError(f"target epsilon {target_epsilon} is unreachable with q={sample_rate}, "
                             f"{steps} steps, delta={delta}: {exc}") from exc
    else:
        low, sigma = 0.0, 1.0
        while epsilon(sigma) > target_epsilon:
            low, sigma = sigma, sigma * 2
            if sigma > 1e4:
                raise ValueError(f"target epsilon {target_epsilon} is unreachable with q={sample_rate}, "
                                 f"{steps} steps, delta={delta} after the warm start's history")
        while sigma - low > 0.005 * sigma:
            mid = (low + sigma) / 2
            low, sigma = (low, mid) if epsilon(mid) <= target_epsilon else (mid, sigma)
    # A search stops at a tolerance; make sure the σ we return really meets the target.
    while epsilon(sigma) > target_epsilon:
        sigma *= 1.01
    return sigma


def resolve_noise_multiplier(*, noise_multiplier: float | None, target_epsilon: float | None,
                             sample_rate: float, steps: int, delta: float, accountant: str = "rdp",
                             priors: list[list] | None = None) -> float:
    """σ for a run: the one calibration rule every path uses (trainer, simulator, Flower).

    * target only: σ calibrated so that `steps` steps spend the budget;
    * σ and target: σ kept, but refused now if it cannot run `steps` steps within the target;
    * σ only: σ kept (no budget).

    Raises:
        ValueError: neither given, or a σ that the target would stop early (says how far it gets).
    """
    if noise_multiplier is None:
        if target_epsilon is None:
            raise ValueError("a private run needs --target-epsilon (calibrates sigma) or --noise-multiplier")
        return calibrate_noise_multiplier(target_epsilon=target_epsilon, sample_rate=sample_rate, steps=steps,
                                          delta=delta, accountant=accountant, priors=priors)
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    if target_epsilon is not None:
        if noise_multiplier == 0:
            raise ValueError("noise_multiplier 0 gives no privacy: it cannot meet a target epsilon")
        ledger = PrivacyLedger(delta=delta, accountant=accountant, priors=priors or [[]])
        after = ledger.epsilon_after(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        if after > target_epsilon:
            raise ValueError(f"noise multiplier {noise_multiplier} spends epsilon {round_up(after)} in {steps} steps "
                             f"(q={sample_rate}, delta={delta}), over the target {target_epsilon}: raise "
                             f"--noise-multiplier, lower the steps, or give only --target-epsilon to calibrate")
    return float(noise_multiplier)


def _accountant_with(name: str, history):
    acc = _new_accountant(name)
    acc.history = [tuple(h) for h in history]
    return acc


@dataclass
class PrivacyLedger:
    """The accountant of one run (or of one hospital), with an optional budget.

    Args:
        delta: δ of every reported ε.
        accountant: "rdp" or "prv".
        target_epsilon: the budget; `can_take` is False past it and `step` refuses. None: no budget.
        history: this run's steps, [(σ, q, count), ...].
        priors: histories spent BEFORE this run on the same patients (a warm start from a private
            checkpoint). ε composes each prior with `history` and reports the worst; [[]]: none.
    """

    delta: float
    accountant: str = "rdp"
    target_epsilon: float | None = None
    history: list[tuple[float, float, int]] = field(default_factory=list)
    priors: list[list[tuple[float, float, int]]] = field(default_factory=lambda: [[]])

    def __post_init__(self) -> None:
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        self.priors = [[tuple(h) for h in prior] for prior in (self.priors or [[]])]

    @property
    def steps(self) -> int:
        return sum(count for _, _, count in self.history)

    def histories(self) -> list[list[tuple[float, float, int]]]:
        """Every composed history this ledger stands for (prior + this run), for checkpoints."""
        return [[*prior, *self.history] for prior in self.priors]

    def _epsilon(self, history) -> float:
        return max(_epsilon_of(_accountant_with(self.accountant, [*prior, *history]), self.delta)
                   for prior in self.priors)

    def epsilon(self) -> float:
        """ε so far (priors included), unrounded upper bound; 0 before anything was spent."""
        return self._epsilon(self.history)

    def epsilon_after(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> float:
        """ε if `steps` more steps at (σ, q) were taken."""
        return self._epsilon(self._appended(noise_multiplier, sample_rate, steps))

    def can_take(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> bool:
        """The one budget policy: True if `steps` more steps keep ε within the target.

        Without a target, always True. With one, a step without noise (σ = 0) is never allowed.
        """
        if self.target_epsilon is None:
            return True
        if noise_multiplier <= 0:
            return False
        after = self.epsilon_after(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        return after <= self.target_epsilon

    def step(self, *, noise_multiplier: float, sample_rate: float) -> None:
        """Record one application of the sampled Gaussian mechanism.

        Raises:
            RuntimeError: if the step would exceed the budget (callers check can_take first).
        """
        _check(noise_multiplier, sample_rate, self.delta, self.accountant)
        if not self.can_take(noise_multiplier=noise_multiplier, sample_rate=sample_rate):
            raise RuntimeError(f"privacy budget exhausted: one more step would exceed epsilon "
                               f"{self.target_epsilon} at delta {self.delta}")
        self.history = self._appended(noise_multiplier, sample_rate, 1)

    def record(self, steps: list[tuple[float, float]]) -> None:
        """Record steps already taken elsewhere (e.g. in a hospital's local training), unchecked."""
        for noise_multiplier, sample_rate in steps:
            _check(noise_multiplier, sample_rate, self.delta, self.accountant)
            self.history = self._appended(noise_multiplier, sample_rate, 1)

    def _appended(self, noise_multiplier: float, sample_rate: float, steps: int):
        history = [tuple(h) for h in self.history]
        if history and history[-1][:2] == (noise_multiplier, sample_rate):
            history[-1] = (noise_multiplier, sample_rate, history[-1][2] + steps)
        elif steps:
            history.append((noise_multiplier, sample_rate, steps))
        return history

    def report(self) -> dict:
        """ε rounded up to 2 decimals, always with its δ and accountant."""
        return {"epsilon": round_up(self.epsilon()), "delta": self.delta, "accountant": self.accountant,
                "steps": self.steps}

    def state_dict(self) -> dict:
        return {"delta": self.delta, "accountant": self.accountant, "target_epsilon": self.target_epsilon,
                "history": [list(h) for h in self.history], "priors": [[list(h) for h in p] for p in self.priors]}

    @classmethod
    def from_state_dict(cls, state: dict) -> "PrivacyLedger":
        return cls(delta=state["delta"], accountant=state["accountant"], target_epsilon=state["target_epsilon"],
                   history=[tuple(h) for h in state["history"]],
                   priors=[[tuple(h) for h in p] for p in state.get("priors", [[]])])
