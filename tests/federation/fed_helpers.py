"""Helpers for the federation tests: run-config values and the simulator replay for parity."""
from __future__ import annotations

import torch

from federation.config import RunConfig
from federation.task import Hospital, load_hospital
from trainer.dp.mechanism import server_update

HOSPITALS = 3


def base_run(fed_data: dict, **overrides) -> dict:
    """Run-config overrides for the tiny federation (declared sizes from the split)."""
    return {"total-patients": fed_data["total"], "max-patients": fed_data["max"], "hospitals": HOSPITALS,
            "rounds": 2, "sample-rate": 0.3, "clipping-norm": 1.0, "learning-rate": 0.5, **overrides}


def simulator_aggregates(fed_data: dict, run_values: dict, trace: dict) -> tuple[list[np.ndarray], object]:
    """Replay each round in the in-process simulator (DopamineMode, same hospitals, same seed),
    starting every round from the federation's own weights and momentum, and return the
    simulator's aggregate S per round (recovered from its momentum buffer) and its ledger."""
    from trainer.data.augment import Augment
    from edge_client.preprocess import PreprocessConfig
    from trainer.model import build_model
    from trainer.modes.dp_sgd import DopamineMode
    run = RunConfig.from_flower(run_values)
    hospitals = [load_hospital(d, image_size=run.image_size) for d in fed_data["hospitals"]]
    config = run.train_config()
    config.delta = Hospital.accountant_delta(run)
    torch.manual_seed(run.seed)
    model = build_model(5, dropout=run.dropout)
    mode = DopamineMode(model=model, hospitals=hospitals, config=config,
                        augment=Augment(PreprocessConfig(image_size=run.image_size)))
    assert torch.equal(mode.weights(), torch.from_numpy(trace["w0"])), "w_0 differs from the simulator's"
    assert run.optimizer == "sgd", "S is recovered from the SGD momentum buffer"
    weights, state = torch.from_numpy(trace["w0"]).clone(), {}
    expected = run.sample_rate * run.total_patients
    out = []
    for r, fed_aggregate in enumerate(trace["aggregates"]):
        mode.set_weights(weights.clone())
        mode.optimizer_state = {k: v.clone() for k, v in state.items()}
        before = state.get("momentum", torch.zeros_like(weights)).double()
        mode.run_round(r)
        after = mode.optimizer_state["momentum"].double()
        out.append(((after - run.momentum * before) * expected).numpy())
        weights, state = server_update(weights, state, torch.from_numpy(fed_aggregate), optimizer="sgd",
                                       expected_batch_size=expected, learning_rate=run.learning_rate,
                                       momentum=run.momentum)
    return out, mode.ledger
