"""Helpers for the federation tests: run-config values, the test-only app
(tests/federation/flower_app/), and the simulator's own round (`dopamine_round`) replayed on the
federation's weights for parity."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from federation.config import RunConfig
from federation.secagg import aggregate_error_bound
from federation.task import accountant_delta, flat_weights, load_hospital, run_noise_multiplier
from trainer.data.augment import Augment
from edge_client.preprocess import PreprocessConfig
from trainer.dp.dopamine import dopamine_round, noise_share_std, server_step
from trainer.dp.noise import seeded_generator
from trainer.dp.per_sample import PerSampleClipper
from trainer.dp.server_optimizers import ServerOptimizer
from trainer.model import build_model
from trainer.privacy import PrivacyLedger, round_up

HOSPITALS = 3
# Parity is bit-level before quantization only if the nodes and the simulator run torch with the
# same thread count (a conv sums in another order on 2 threads than on 1).
NODE_THREADS = 1
NODE_ENV = {"OMP_NUM_THREADS": str(NODE_THREADS)}
TEST_APP = Path(__file__).resolve().parents[1] / "federation" / "flower_app"   # the product app + test hooks


def base_run(fed_data: dict, **overrides) -> dict:
    """Run-config overrides for the tiny federation (declared sizes from the split)."""
    return {"total-patients": fed_data["total"], "max-patients": fed_data["max"], "hospitals": HOSPITALS,
            "rounds": 2, "sample-rate": 0.3, "clipping-norm": 1.0, "learning-rate": 0.5,
            **overrides}


def simulator_aggregates(fed_data: dict, run_values: dict, trace: dict) -> tuple[list[np.ndarray], PrivacyLedger]:
    """The simulator's `dopamine_round` on the same hospitals with the same test-only seeds, each
    round started from the federation's own weights (so rounding differences do not compound).
    Returns each round's `RoundResult.aggregate` and the simulator's ledger."""
    threads = torch.get_num_threads()
    torch.set_num_threads(NODE_THREADS)
    try:
        return _simulate(fed_data, run_values, trace)
    finally:
        torch.set_num_threads(threads)


def _simulate(fed_data: dict, run_values: dict, trace: dict) -> tuple[list[np.ndarray], PrivacyLedger]:
    run = RunConfig.from_flower(run_values)
    hospitals = [load_hospital(d, image_size=run.image_size) for d in fed_data["hospitals"]]
    torch.manual_seed(run.seed)
    model = build_model(5, dropout=run.dropout)
    assert torch.equal(flat_weights(model), torch.from_numpy(trace["w0"])), "w_0 differs from the simulator's"
    clipper = PerSampleClipper(model, method=run.per_sample_method, clipping_norm=run.clipping_norm)
    sigma = run_noise_multiplier(run)
    std = noise_share_std(noise_multiplier=sigma, clipping_norm=run.clipping_norm, min_participants=run.k_min,
                          colluders=run.colluders)
    optimizer = ServerOptimizer(run.optimizer, learning_rate=run.learning_rate, momentum=run.momentum,
                                weight_decay=run.weight_decay)
    expected = run.sample_rate * run.total_patients
    noise = [seeded_generator(run.noise_seed_or_none, k + 1) for k in range(HOSPITALS)]
    augment_generators = [seeded_generator(run.seed_or_none, k + 1) for k in range(HOSPITALS)]
    augment = Augment(PreprocessConfig(image_size=run.image_size)) if run.augment else None
    ledger = PrivacyLedger(delta=accountant_delta(run), accountant=run.accountant)
    weights, state, out = torch.from_numpy(trace["w0"]).clone(), {}, []
    for fed_aggregate in trace["aggregates"]:
        result = dopamine_round(clipper, weights, state, hospitals, sample_rate=run.sample_rate, share_std=std,
                                expected_batch_size=expected, optimizer=optimizer, noise_generators=noise,
                                augment=augment, augment_generators=augment_generators)
        out.append(result.aggregate.double().numpy())
        if sigma > 0:
            ledger.step(noise_multiplier=sigma, sample_rate=run.sample_rate)
        weights, state = server_step(weights, state, torch.from_numpy(fed_aggregate).to(weights.dtype),
                                     optimizer=optimizer, expected_batch_size=expected)
    return out, ledger


def check_parity(fed_data: dict, results: dict, rounds: int = 2) -> list[float]:
    """A test-mode run's per-round aggregates (trace.npz) equal the simulator's within the
    quantization bound, with the simulator's ε; returns each round's worst error."""
    assert results["status"] == "completed", results["reason"]
    assert [r["participants"] for r in results["rounds"]] == [HOSPITALS] * rounds
    trace = dict(np.load(Path(results["config"]["out_dir"]) / "trace.npz"))
    sim, ledger = simulator_aggregates(fed_data, results["config"], trace)
    bound = aggregate_error_bound(results["prescale"]["quantization_step"], HOSPITALS)
    worst = []
    for round_, (fed, expected) in enumerate(zip(trace["aggregates"], sim), start=1):
        error = np.abs(fed - expected)
        # Quantization (stochastic rounding, < 1 step per hospital) plus float32 rounding of S.
        over = np.flatnonzero(error > bound + 1e-6 * (1 + np.abs(expected)))
        assert over.size == 0, (f"round {round_}: {over.size} of {error.size} coordinates off by more than {bound:.3g} "
                                f"(worst {error.max():.3g} at {int(error.argmax())}, first {over[:5].tolist()})")
        worst.append(float(error.max()))
    if results["noise_multiplier"] > 0:
        assert results["privacy"]["history"] == [list(h) for h in ledger.history]
        assert results["privacy"]["epsilon"] == round_up(ledger.epsilon())
        assert results["privacy"]["seeded"] is True
    return worst
