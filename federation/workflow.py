"""Flower's SecAgg+ workflow, timed per stage (where a round's seconds go), nothing else changed."""
from __future__ import annotations

import time

from flwr.server.workflow import SecAggPlusWorkflow


class TimedSecAggPlusWorkflow(SecAggPlusWorkflow):
    """Records each stage's wall seconds in `stage_seconds` (reset at every setup stage)."""

    stage_seconds: dict[str, float]

    def _timed(self, name: str, stage, grid, context, state) -> bool:
        started = time.perf_counter()
        try:
            return stage(grid, context, state)
        finally:
            self.stage_seconds[name] = round(time.perf_counter() - started, 3)

    def setup_stage(self, grid, context, state) -> bool:
        self.stage_seconds = {}
        return self._timed("setup", super().setup_stage, grid, context, state)

    def share_keys_stage(self, grid, context, state) -> bool:
        return self._timed("share_keys", super().share_keys_stage, grid, context, state)

    def collect_masked_vectors_stage(self, grid, context, state) -> bool:
        return self._timed("collect_masked_vectors", super().collect_masked_vectors_stage, grid, context, state)

    def unmask_stage(self, grid, context, state) -> bool:
        # unmask calls strategy.aggregate_fit at its end: the strategy reads the other stages' times.
        return self._timed("unmask", super().unmask_stage, grid, context, state)
