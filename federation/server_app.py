"""Flower ServerApp: thin. Reads the run config once, builds the strategy over the trainer's
server step and runs Flower's legacy workflow with SecAgg+ (the only SecAgg+ path in flwr 1.42).
"""
from __future__ import annotations

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.server import LegacyContext, ServerConfig
from flwr.server.workflow import DefaultWorkflow

from federation.config import ConfigError, RunConfig
from federation.results import ResultsWriter, server_evaluator
from federation.secagg import MAX_WEIGHT
from federation.strategy import DopamineStrategy, FederationStop
from federation.task import accountant_delta, flat_weights, run_noise_multiplier, run_prescale
from federation.workflow import TimedSecAggPlusWorkflow
from trainer.model import build_model
from trainer.warm_start import WarmStart, read_warm_start

app = ServerApp()


def initial_model(run: RunConfig) -> tuple[torch.nn.Module, WarmStart]:
    """w_0 and what it carries: a fresh model (seeded by the experiment seed, as the simulator's
    Run is) or `init-weights`, whose privacy history is composed unless declared public.

    Raises:
        ConfigError: private init weights that cannot compose (trained without DP, or seeded).
    """
    if run.init_weights:
        from trainer.checkpoint import CheckpointError, load_checkpoint
        try:
            warm = read_warm_start(run.init_weights, declared_public=run.init_weights_public,
                                   private_run=run.mode != "fedavg")
            model, _ = load_checkpoint(run.init_weights)
        except (ValueError, CheckpointError) as exc:
            raise ConfigError(f"run config init-weights: {str(exc).replace('--weights-public', 'init-weights-public=true')}") from None
        return model, warm
    if run.seed_or_none is not None:
        torch.manual_seed(run.seed_or_none)
    return build_model(5, dropout=run.dropout), WarmStart()


def run_server(grid: Grid, context: Context, *, strategy_cls=DopamineStrategy) -> DopamineStrategy | None:
    """The whole server side of a run; `strategy_cls` lets a test app observe the aggregates."""
    run = RunConfig.from_flower(context.run_config)
    run.check()
    if run.server_poll_interval > 0:
        from federation.launch.polling import adaptive_server_grid
        adaptive_server_grid(run.server_poll_interval)
    writer = ResultsWriter(run)
    strategy = model = None
    try:
        model, warm = initial_model(run)
        writer.warm_start = warm
        weights = flat_weights(model)
        sigma = run_noise_multiplier(run)
        prescale = run_prescale(run, dimension=weights.numel(), noise_multiplier=sigma) \
            if run.mode == "dopamine" else None
        strategy = strategy_cls(run, weights=weights, noise_multiplier=sigma, prescale=prescale,
                                evaluate_fn=server_evaluator(run, model), accountant_delta=accountant_delta(run),
                                priors=warm.priors)
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
    return strategy


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_server(grid, context)
