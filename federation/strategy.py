"""The server's side of a round as a Flower (legacy) Strategy: hand out w_t, turn the SecAgg+
mean back into the sum S, call the trainer's `server_step` (trainer/dp/dopamine.py, the function the
simulator's round calls), keep the server's accountant, and evaluate on the server's own held-out
set. Nothing here sees a single hospital's vector.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from flwr.common import FitIns, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import Strategy

from federation.config import RunConfig
from federation.secagg import MAX_WEIGHT, PreScale
from federation.task import released_delta
from trainer.dp.dopamine import server_step
from trainer.dp.server_optimizers import ServerOptimizer
from trainer.privacy import PrivacyLedger, round_up

log = logging.getLogger("dopamine.federation")


class FederationStop(RuntimeError):
    """The run stops before its last round; the message is the reason recorded in results.json."""


class DopamineStrategy(Strategy):
    """Server step for `dopamine` (the trainer's `server_step` on S, divided by q·ΣN_k) and weight
    averaging for `fedavg` / `fl-parallel-dp`, over whatever SecAgg+ unmasked.

    Args:
        run: the run config.
        weights: initial flat weights w_0.
        noise_multiplier: σ (dopamine), public.
        prescale: the public SecAgg+ scale (dopamine).
        evaluate_fn: optional callable(flat weights) -> metrics dict on the server's held-out set.
        accountant_delta: δ for the ledger (the run's δ minus SecAgg+'s clipping cost).
        priors: privacy histories of private init weights, composed into the ledger.
    """

    def __init__(self, run: RunConfig, *, weights: torch.Tensor, noise_multiplier: float,
                 prescale: PreScale | None, evaluate_fn=None, accountant_delta: float | None = None,
                 priors: list[list] | None = None) -> None:
        self.run = run
        self.weights = weights.clone()
        self.initial_weights = weights.clone()
        self.optimizer_state: dict = {}
        self.optimizer = ServerOptimizer(run.optimizer, learning_rate=run.learning_rate, momentum=run.momentum,
                                         weight_decay=run.weight_decay)
        self.noise_multiplier = noise_multiplier
        self.prescale = prescale
        self.evaluate_fn = evaluate_fn
        self.rounds: list[dict] = []
        self.ledger = PrivacyLedger(delta=accountant_delta or run.delta, accountant=run.accountant,
                                    target_epsilon=run.target_epsilon or None, priors=priors)
        self.expected_batch = run.sample_rate * run.total_patients
        self._round_started = 0.0
        self.stage_seconds = dict   # set by the ServerApp to the workflow's per-stage timer
        self.halt_reasons = list    # set by the ServerApp: why SecAgg+ halted the last round

    # -- parameters -------------------------------------------------------------------------
    def _parameters(self) -> Parameters:
        return ndarrays_to_parameters([self.weights.numpy().astype(np.float32)])

    def initialize_parameters(self, client_manager) -> Parameters:
        return self._parameters()

    # -- fit ----------------------------------------------------------------------------------
    def configure_fit(self, server_round: int, parameters: Parameters, client_manager):
        run = self.run
        self.check_round_done(server_round - 1)
        self._wait_for_hospitals(client_manager)
        available = list(client_manager.all().values())
        if len(available) < run.k_min:
            raise FederationStop(f"round {server_round}: {len(available)} hospitals connected, below "
                                 f"K_min={run.k_min} (waited {run.node_wait:.0f} s)")
        if run.mode == "dopamine" and self.noise_multiplier > 0:
            # Counted when the round starts: a hospital may noise and send before a dropout aborts it.
            if not self.ledger.can_take(noise_multiplier=self.noise_multiplier, sample_rate=run.sample_rate):
                raise FederationStop(f"stopped before round {server_round}: it would exceed target epsilon "
                                     f"{run.target_epsilon}")
            self.ledger.step(noise_multiplier=self.noise_multiplier, sample_rate=run.sample_rate)
        self._round_started = time.perf_counter()
        config = {"server-round": server_round, "model-version": run.model_version}
        fit_ins = FitIns(self._parameters(), config)
        return [(proxy, fit_ins) for proxy in available[: run.hospitals]]

    def _wait_for_hospitals(self, client_manager) -> None:
        """Wait up to node-wait s for K hospitals. Flower's legacy client manager learns of nodes
        when asked (`num_available`) or every 5 s, and `wait_for` alone does not ask: every run's
        first round waited ~5 s for nodes that were already online."""
        deadline = time.monotonic() + self.run.node_wait
        while client_manager.num_available() < self.run.hospitals and time.monotonic() < deadline:
            client_manager.wait_for(self.run.hospitals, timeout=1)

    def aggregate_fit(self, server_round: int, results, failures):
        run = self.run
        reasons = sorted({failure_reason(f) for f in failures})
        n = len(results)
        if n < run.k_min:
            raise FederationStop(f"round {server_round}: only {n} hospitals' shares survived, below "
                                 f"K_min={run.k_min}; round aborted (failures: {'; '.join(reasons) or 'none'})")
        mean = parameters_to_ndarrays(results[0][1].parameters)[0].astype(np.float64)
        if run.mode == "dopamine":
            self.apply_aggregate(server_round, torch.from_numpy(mean * n * self.prescale.scale).to(self.weights.dtype))
        else:
            self.weights = torch.from_numpy(mean * run.weight_scale).to(self.weights.dtype)
        self.rounds.append({"round": server_round, "participants": n, "failures": reasons,
                            "seconds": round(time.perf_counter() - self._round_started, 3),
                            "stage_seconds": self.stage_seconds(),
                            **self.privacy()})
        log.info("round %d: %d hospitals aggregated, %d failures %s", server_round, n, len(failures), reasons)
        return self._parameters(), {}

    def apply_aggregate(self, server_round: int, aggregate: torch.Tensor) -> None:
        """The server's part of the round, on S (what SecAgg+ unmasked, scaled back)."""
        self.weights, self.optimizer_state = server_step(self.weights, self.optimizer_state, aggregate,
                                                         optimizer=self.optimizer,
                                                         expected_batch_size=self.expected_batch)

    def check_round_done(self, server_round: int) -> None:
        """SecAgg+ halts a round silently (too few shares to unmask): stop the run, saying so."""
        if server_round >= 1 and not any(r["round"] == server_round for r in self.rounds):
            reasons = "; ".join(self.halt_reasons()) or "dead or timed out"
            raise FederationStop(f"round {server_round} aborted by SecAgg+: fewer than K_min={self.run.k_min} "
                                 f"hospitals completed the protocol ({reasons})")

    # -- evaluation: only at the server, on its own held-out set ------------------------------
    def configure_evaluate(self, server_round, parameters, client_manager):
        return []   # no plaintext per-hospital metrics

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters):
        if self.evaluate_fn is None:
            return None
        metrics = self.evaluate_fn(self.weights)
        if self.rounds and self.rounds[-1]["round"] == server_round:
            self.rounds[-1]["eval"] = metrics
        return float(metrics.get("loss", 0.0)), {k: v for k, v in metrics.items() if isinstance(v, float)}

    # -- privacy ------------------------------------------------------------------------------
    def privacy(self) -> dict:
        """ε so far (rounded up) and the δ it holds at, SecAgg+'s clipping cost included."""
        if self.run.mode != "dopamine":
            return {}
        if self.noise_multiplier == 0:
            return {"epsilon": math.inf, "steps": self.ledger.steps}
        epsilon = self.ledger.epsilon()
        return {"epsilon": round_up(epsilon), "delta": released_delta(self.run, self.prescale, epsilon),
                "steps": self.ledger.steps}


def failure_reason(failure) -> str:
    """One line from a SecAgg+ failure: a hospital's refusal reason (flwr Error) or the exception."""
    error = failure.args[0] if isinstance(failure, BaseException) and failure.args else failure
    text = getattr(error, "reason", None) or str(error)
    return text.strip().splitlines()[0][:300] if text.strip() else type(failure).__name__


__all__ = ["DopamineStrategy", "FederationStop", "MAX_WEIGHT", "failure_reason"]
