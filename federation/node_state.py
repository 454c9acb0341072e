"""A hospital node's own guards: its persisted accountant and the rounds it refuses.

Whatever the server asks, a hospital
  * refuses a noise seed unless its operator started it in test mode (deployment noise is OS CSPRNG);
  * refuses a round with fewer than K_min participants (a server could otherwise isolate it);
  * refuses a round that would take its accountant past its budget;
  * keeps that accountant in its state directory (atomic writes), so a restart never resets ε.
A round is counted when the node computes its noised share, before it leaves the node: once sent,
the node cannot know whether the server used it (see docs/OPERATORS.md, "Dropouts").
"""
from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path

from edge_client.fileio import atomic_write
from trainer.privacy import PrivacyLedger

LEDGER_FILE = "privacy_ledger.json"
LOCK_FILE = ".ledger.lock"
GENERATOR_FILE = "test_generator-{run_id}.pt"   # per run: a test run starts from its seed
LEDGER_FORMAT = "dopamine-hospital-ledger"


class NodeRefusal(RuntimeError):
    """A hospital refuses this round; the message (one line) says why."""


def check_seed(noise_seed: int | None, *, test_mode: bool) -> None:
    """A noise seed makes the noise predictable: only an explicitly started test node accepts one.

    Raises:
        NodeRefusal: a noise seed in deployment.
    """
    if noise_seed is not None and not test_mode:
        raise NodeRefusal(f"run config asks for noise-seed {noise_seed}, but this hospital node is not in test "
                          "mode: deployment noise and sampling come from the OS CSPRNG only")


def check_participants(participants: int, *, min_participants: int) -> None:
    """Raises NodeRefusal if fewer than K_min hospitals take part in the round."""
    if participants < min_participants:
        raise NodeRefusal(f"round has {participants} participants, below this hospital's minimum "
                          f"K_min={min_participants}: refusing so the server cannot isolate it")


class HospitalState:
    """One hospital's persistent state: its privacy ledger (and, in test mode, its generator).

    Args:
        state_dir: the node's own directory (node config `state-dir`).
        delta: δ for the accountant (the run's δ minus δ_clip).
        accountant: "rdp" or "prv".
        target_epsilon: this hospital's budget; None means no budget (test runs only).
    Raises:
        NodeRefusal: if the saved ledger was kept with another δ or accountant (ε would not compose).
    """

    def __init__(self, state_dir: str | Path, *, delta: float, accountant: str,
                 target_epsilon: float | None) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / LEDGER_FILE
        if path.is_file():
            saved = self._read(path)
            if (saved["delta"], saved["accountant"]) != (delta, accountant):
                raise NodeRefusal(f"{path}: ledger kept at delta={saved['delta']} ({saved['accountant']}), run asks "
                                  f"delta={delta} ({accountant}); use a new state-dir only for a new data set")
            saved["target_epsilon"] = target_epsilon
            self.ledger = PrivacyLedger.from_state_dict(saved)
        else:
            self.ledger = PrivacyLedger(delta=delta, accountant=accountant, target_epsilon=target_epsilon)

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != LEDGER_FORMAT:
                raise ValueError("not a hospital ledger")
            return data["ledger"]
        except (ValueError, KeyError, OSError) as exc:
            raise NodeRefusal(f"{path}: unreadable privacy ledger ({exc}); refusing to train "
                              "rather than restart epsilon from zero") from None

    def check_budget(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Raises NodeRefusal if `steps` more steps would exceed this hospital's budget (the ledger's
        one policy, `can_take`). The message carries public constants only, never this hospital's N."""
        if noise_multiplier <= 0 and self.ledger.target_epsilon is not None:
            raise NodeRefusal("run asks for noise_multiplier 0 (no privacy) but this hospital has a budget")
        if not self.ledger.can_take(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps):
            raise NodeRefusal(f"privacy budget: {steps} more step(s) at sigma={noise_multiplier:g}, q={sample_rate:g} "
                              f"would exceed this hospital's epsilon {self.ledger.target_epsilon} "
                              f"(delta={self.ledger.delta}); refusing")

    @contextlib.contextmanager
    def _locked(self):
        """One writer at a time: two runs on the same node must not lose each other's steps."""
        with open(self.dir / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _reload(self) -> None:
        path = self.dir / LEDGER_FILE
        if path.is_file():
            saved = self._read(path)
            saved["target_epsilon"] = self.ledger.target_epsilon
            self.ledger = PrivacyLedger.from_state_dict(saved)

    def record(self, *, noise_multiplier: float, sample_rate: float) -> None:
        """Count one release of the sampled Gaussian mechanism and persist it before the share leaves.

        Raises:
            NodeRefusal: if, counted with what other runs recorded meanwhile, it exceeds the budget.
        """
        if noise_multiplier <= 0:
            return
        with self._locked():
            self._reload()
            self.check_budget(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
            self.ledger.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
            self.save()

    def record_steps(self, steps: list[tuple[float, float]]) -> None:
        """Persist local DP-SGD steps (fl-parallel-dp) taken since the ledger was read."""
        if not steps:
            return
        with self._locked():
            self._reload()
            self.ledger.record(steps)
            self.save()

    def save(self) -> None:
        data = {"format": LEDGER_FORMAT, "ledger": self.ledger.state_dict()}
        atomic_write(self.dir / LEDGER_FILE, json.dumps(data, indent=1).encode())

    def epsilon(self) -> float:
        return self.ledger.epsilon()

    # -- test mode only: seeded generators survive between ClientApp processes ---------------------
    def load_generators(self, generators: dict, *, run_id: int) -> dict:
        """Restore {name: torch.Generator | None} saved by an earlier round of the same run."""
        import torch
        path = self.dir / GENERATOR_FILE.format(run_id=run_id)
        saved = torch.load(path, weights_only=True) if path.is_file() else {}
        for name, generator in generators.items():
            if generator is not None and name in saved:
                generator.set_state(saved[name])
        return generators

    def save_generators(self, generators: dict, *, run_id: int) -> None:
        from trainer.checkpoint import atomic_torch_save  # torch loads only when a round runs
        states = {name: g.get_state() for name, g in generators.items() if g is not None}
        if states:
            atomic_torch_save(states, self.dir / GENERATOR_FILE.format(run_id=run_id))
