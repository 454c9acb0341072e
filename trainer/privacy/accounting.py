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
                               accountant: str = "rdp") -> float:
    """Smallest σ (to Opacus' tolerance) whose ε after `steps` is ≤ target_epsilon.

    Raises:
        ValueError: if the target cannot be reached (e.g. ε too small for δ).
    """
    if not target_epsilon > 0:
        raise ValueError(f"target epsilon must be > 0, got {target_epsilon}")
    _check(1.0, sample_rate, delta, accountant)
    from opacus.accountants.utils import get_noise_multiplier
    try:
        sigma = get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                     sample_rate=sample_rate, steps=steps, accountant=accountant)
    except ValueError as exc:
        raise ValueError(f"target epsilon {target_epsilon} is unreachable with q={sample_rate}, "
                         f"{steps} steps, delta={delta}: {exc}") from exc
    # Opacus searches to a tolerance; make sure the σ we return really meets the target.
    while compute_epsilon(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta,
                          accountant=accountant) > target_epsilon:
        sigma *= 1.01
    return sigma


@dataclass
class PrivacyLedger:
    """The accountant of one run (or one hospital), with an optional budget.

    Args:
        delta: δ of every reported ε.
        accountant: "rdp" or "prv".
        target_epsilon: the budget; `can_step` refuses a step past it. None: no budget.
    """

    delta: float
    accountant: str = "rdp"
    target_epsilon: float | None = None
    history: list[tuple[float, float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")

    @property
    def steps(self) -> int:
        return sum(count for _, _, count in self.history)

    def _opacus(self, history):
        acc = _new_accountant(self.accountant)
        acc.history = [tuple(h) for h in history]
        return acc

    def epsilon(self) -> float:
        """ε so far, unrounded upper bound (0 before the first step)."""
        return _epsilon_of(self._opacus(self.history), self.delta)

    def epsilon_after(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> float:
        return _epsilon_of(self._opacus(self._appended(noise_multiplier, sample_rate, steps)), self.delta)

    def can_step(self, *, noise_multiplier: float, sample_rate: float) -> bool:
        """True if one more step keeps ε within the budget (always True without a budget)."""
        if self.target_epsilon is None:
            return True
        return self.epsilon_after(noise_multiplier=noise_multiplier, sample_rate=sample_rate) <= self.target_epsilon

    def step(self, *, noise_multiplier: float, sample_rate: float) -> None:
        """Record one application of the sampled Gaussian mechanism.

        Raises:
            RuntimeError: if the step would exceed the budget (the caller must check can_step first).
        """
        _check(noise_multiplier, sample_rate, self.delta, self.accountant)
        if not self.can_step(noise_multiplier=noise_multiplier, sample_rate=sample_rate):
            raise RuntimeError(f"privacy budget exhausted: one more step would exceed epsilon "
                               f"{self.target_epsilon} at delta {self.delta}")
        self.history = self._appended(noise_multiplier, sample_rate, 1)

    def _appended(self, noise_multiplier: float, sample_rate: float, steps: int):
        history = [tuple(h) for h in self.history]
        if history and history[-1][:2] == (noise_multiplier, sample_rate):
            history[-1] = (noise_multiplier, sample_rate, history[-1][2] + steps)
        else:
            history.append((noise_multiplier, sample_rate, steps))
        return history

    def report(self) -> dict:
        """ε rounded up to 2 decimals, always with its δ and accountant."""
        return {"epsilon": round_up(self.epsilon()), "delta": self.delta, "accountant": self.accountant,
                "steps": self.steps}

    def state_dict(self) -> dict:
        return {"delta": self.delta, "accountant": self.accountant, "target_epsilon": self.target_epsilon,
                "history": [list(h) for h in self.history]}

    @classmethod
    def from_state_dict(cls, state: dict) -> "PrivacyLedger":
        return cls(delta=state["delta"], accountant=state["accountant"], target_epsilon=state["target_epsilon"],
                   history=[tuple(h) for h in state["history"]])
