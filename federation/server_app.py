"""Flower ServerApp: thin. Reads the run config once, builds the strategy over the trainer's
server step and runs Flower's legacy workflow with SecAgg+ (the only SecAgg+ path in flwr 1.42).
"""
from __future__ import annotations

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.server import LegacyContext, ServerConfig
from flwr.server.workflow import DefaultWorkflow

from federation.config import RunConfig
from federation.results import ResultsWriter, server_evaluator
from federation.secagg import MAX_WEIGHT
from federation.strategy import DopamineStrategy, FederationStop
from federation.workflow import TimedSecAggPlusWorkflow
from federation.task import Hospital, flat_weights, resolve_noise_multiplier, run_prescale
from trainer.model import build_model

app = ServerApp()


def initial_model(run: RunConfig) -> torch.nn.Module:
    """w_0: a fresh model (seeded as the simulator's in test mode) or a given checkpoint."""
    if run.init_weights:
        from trainer.checkpoint import load_checkpoint
        model, _ = load_checkpoint(run.init_weights)
        return model
    if run.seed_or_none is not None:
        torch.manual_seed(run.seed_or_none)   # the simulator's Run seeds the same way
    return build_model(5, dropout=run.dropout)


@app.main()
def main(grid: Grid, context: Context) -> None:
    run = RunConfig.from_flower(context.run_config)
    run.check()
    if run.server_poll_interval > 0:
        from federation.polling import adaptive_server_grid
        adaptive_server_grid(run.server_poll_interval)
    writer = ResultsWriter(run)
    strategy = model = None
    try:
        model = initial_model(run)
        weights = flat_weights(model)
        sigma = resolve_noise_multiplier(run) if run.mode != "fedavg" else 0.0
        prescale = run_prescale(run, dimension=weights.numel(), noise_multiplier=sigma) \
            if run.mode == "dopamine" else None
        strategy = DopamineStrategy(run, weights=weights, noise_multiplier=sigma, prescale=prescale,
                                    evaluate_fn=server_evaluator(run, model),
                                    record_aggregates=run.seed_or_none is not None,
                                    accountant_delta=Hospital.accountant_delta(run))
        writer.start(strategy)
        max_weight = MAX_WEIGHT if run.mode == "dopamine" else float(run.max_patients)
        scale_range = prescale.clipping_range if prescale else 8.0
        secagg = TimedSecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=run.k_min, max_weight=max_weight,
                                          clipping_range=scale_range, timeout=run.secagg_timeout)
        strategy.stage_seconds = lambda: dict(getattr(secagg, "stage_seconds", {}))
        strategy.halt_reasons = lambda: list(secagg.halt_reasons)
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=run.rounds), strategy=strategy)
        DefaultWorkflow(fit_workflow=secagg)(grid, legacy)
        strategy.check_round_done(run.rounds)
        writer.finish(strategy, model, status="completed", reason=f"completed {run.rounds} rounds")
    except FederationStop as stop:
        writer.finish(strategy, model, status="stopped", reason=str(stop))
    except Exception as exc:  # recorded, then re-raised so `flwr ls` shows the run as failed
        writer.fail(exc)
        raise
