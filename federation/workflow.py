"""Flower's SecAgg+ workflow, timed per stage (where a round's seconds go), nothing else changed."""
from __future__ import annotations

import time

from flwr.server.workflow import SecAggPlusWorkflow


class TimedSecAggPlusWorkflow(SecAggPlusWorkflow):
    """Records each stage's wall seconds in `stage_seconds` (reset at every setup stage) and, when
    a stage halts the round, the hospitals' refusal reasons in `halt_reasons`."""

    stage_seconds: dict[str, float]
    halt_reasons: list[str] = []

    def _timed(self, name: str, stage, grid, context, state) -> bool:
        started = time.perf_counter()
        ok = False
        try:
            ok = stage(grid, context, state)
            return ok
        finally:
            self.stage_seconds[name] = round(time.perf_counter() - started, 3)
            if not ok:   # Flower halts silently: keep the hospitals' reasons for the stop message
                from federation.strategy import failure_reason
                self.halt_reasons = sorted({failure_reason(f) for f in state.failures})

    def setup_stage(self, grid, context, state) -> bool:
        self.stage_seconds, self.halt_reasons = {}, []
        return self._timed("setup", super().setup_stage, grid, context, state)

    def share_keys_stage(self, grid, context, state) -> bool:
        return self._timed("share_keys", super().share_keys_stage, grid, context, state)

    def collect_masked_vectors_stage(self, grid, context, state) -> bool:
        return self._timed("collect_masked_vectors", super().collect_masked_vectors_stage, grid, context, state)

    def unmask_stage(self, grid, context, state) -> bool:
        # unmask calls strategy.aggregate_fit at its end: the strategy reads the other stages' times.
        return self._timed("unmask", super().unmask_stage, grid, context, state)
