"""TEST-ONLY Flower ServerApp: the product's ServerApp with a hook that tests need and a
deployment must never have.

- `RecordingStrategy`: writes w_0 and every round's aggregate S to OUT/trace.npz, so the parity
  tests compare them with the simulator's `RoundResult.aggregate`.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from flwr.serverapp import ServerApp

from edge_client.fileio import atomic_write
from federation.server_app import run_server
from federation.strategy import DopamineStrategy


class RecordingStrategy(DopamineStrategy):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.aggregates: list[np.ndarray] = []

    def apply_aggregate(self, server_round, aggregate) -> None:
        self.aggregates.append(aggregate.numpy().copy())
        if self.run.out_dir:
            buffer = io.BytesIO()
            np.savez(buffer, w0=self.initial_weights.numpy(), aggregates=np.stack(self.aggregates))
            atomic_write(Path(self.run.out_dir) / "trace.npz", buffer.getvalue())
        super().apply_aggregate(server_round, aggregate)


server_app = ServerApp()


@server_app.main()
def main(grid, context) -> None:
    run_server(grid, context, strategy_cls=RecordingStrategy)
